// Package diskfault gives each node of a chaos run a small filesystem of
// its own, and fills it: a disk that runs out of space under a running
// node (ENOSPC on its log appends and snapshots), then has room again.
//
// Each node's disk is a size-limited tmpfs mounted on a folder that holds
// its data folder. The mounts are made inside the sandbox's private mount
// namespace (chaos/sandbox), as root or as the root of a user namespace
// (tmpfs may be mounted there), so the host never sees them; Teardown
// copies each disk's contents out beside it (the run's artefacts) and
// unmounts it. A disk is filled by a file of zeros written until the
// filesystem refuses even a byte, and freed by removing that file.
package diskfault

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// FillName is the file that fills a disk, at the root of its mount.
const FillName = ".chaos-fill"

// chunk is how much Fill writes at a time before it finds the last bytes
// with smaller writes.
const chunk = 1 << 20

// Disks are the mounted disks of a run, one per node.
type Disks struct {
	dirs []string
	size int64

	mu     sync.Mutex
	filled map[int]int64 // bytes of the fill file per disk
}

// Setup mounts a tmpfs of size bytes on each of dirs (created if missing).
// It must run inside the sandbox: on the host it would mount over the
// host's folders. On error it unmounts what it mounted.
func Setup(dirs []string, size int64) (*Disks, error) {
	if size < 1<<20 {
		return nil, fmt.Errorf("diskfault: a disk of %d bytes is too small for a node", size)
	}
	d := &Disks{size: size, filled: map[int]int64{}}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			d.unmount()
			return nil, err
		}
		if err := mountTmpfs(dir, size); err != nil {
			d.unmount()
			return nil, fmt.Errorf("diskfault: mount a tmpfs on %s: %w", dir, err)
		}
		d.dirs = append(d.dirs, dir)
	}
	return d, nil
}

// Dir is disk i's mount point.
func (d *Disks) Dir(i int) string { return d.dirs[i] }

// Size is each disk's size in bytes.
func (d *Disks) Size() int64 { return d.size }

// Free reports disk i's free bytes.
func (d *Disks) Free(i int) (uint64, error) { return freeBytes(d.dirs[i]) }

// Fill writes zeros to disk i until it refuses even one byte, and returns
// the journal line of what it did.
func (d *Disks) Fill(i int) ([]string, error) {
	path := filepath.Join(d.dirs[i], FillName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, chunk)
	var n int64
	for size := chunk; size > 0; {
		w, err := f.Write(buf[:size])
		n += int64(w)
		switch {
		case err == nil:
		case errors.Is(err, syscall.ENOSPC):
			size /= 2 // the last bytes, in smaller writes
		default:
			return nil, fmt.Errorf("diskfault: fill %s: %w", path, err)
		}
	}
	d.mu.Lock()
	d.filled[i] += n
	total := d.filled[i]
	d.mu.Unlock()
	return []string{fmt.Sprintf("fill %s: %d bytes (%d in all)", d.dirs[i], n, total)}, nil
}

// Unfill removes disk i's fill file: its space is back.
func (d *Disks) Unfill(i int) ([]string, error) {
	path := filepath.Join(d.dirs[i], FillName)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	d.mu.Lock()
	n := d.filled[i]
	delete(d.filled, i)
	d.mu.Unlock()
	if n == 0 {
		return nil, nil
	}
	return []string{fmt.Sprintf("rm %s (%d bytes)", path, n)}, nil
}

// UnfillAll frees every disk.
func (d *Disks) UnfillAll() ([]string, error) {
	var cmds []string
	var errs []error
	for i := range d.dirs {
		c, err := d.Unfill(i)
		cmds = append(cmds, c...)
		errs = append(errs, err)
	}
	return cmds, errors.Join(errs...)
}

// Teardown copies every disk's contents (but the fill file) to
// "<mount point>.kept", for the run's artefacts, and unmounts the disks.
// The nodes must be stopped.
func (d *Disks) Teardown() error {
	var errs []error
	for _, dir := range d.dirs {
		errs = append(errs, copyTree(dir, dir+".kept"))
	}
	errs = append(errs, d.unmount())
	return errors.Join(errs...)
}

func (d *Disks) unmount() error {
	var errs []error
	for _, dir := range d.dirs {
		if err := unmount(dir); err != nil {
			errs = append(errs, fmt.Errorf("diskfault: unmount %s: %w", dir, err))
		}
	}
	d.dirs = nil
	return errors.Join(errs...)
}

// copyTree copies the regular files and folders under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(to, 0o755)
		case !e.Type().IsRegular() || rel == FillName:
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
