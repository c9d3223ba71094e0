package hub

import (
	"iter"
	"slices"
)

// smallGroups is how many groups a connection's groupSet keeps in a slice
// before it switches to a map.
const smallGroups = 8

// groupSet is the groups a connection is in, in the dispatcher's local
// index. Most connections are in a few groups, and a map costs a few
// hundred bytes however few it holds: an idle connection in one group
// keeps a one-element slice (16 bytes) instead. Past smallGroups it is a
// map, so that a connection in thousands of groups joins and leaves in
// constant time. The zero value is empty.
type groupSet struct {
	few  []string
	many map[string]struct{}
}

func (g *groupSet) add(name string) {
	switch {
	case g.many != nil:
		g.many[name] = struct{}{}
	case slices.Contains(g.few, name):
	case len(g.few) < smallGroups:
		g.few = append(g.few, name)
	default:
		g.many = make(map[string]struct{}, 2*smallGroups)
		for _, n := range g.few {
			g.many[n] = struct{}{}
		}
		g.many[name] = struct{}{}
		g.few = nil
	}
}

func (g *groupSet) remove(name string) {
	if g.many != nil {
		delete(g.many, name)
		return
	}
	if i := slices.Index(g.few, name); i >= 0 {
		g.few = slices.Delete(g.few, i, i+1)
	}
}

// all yields every group, in no particular order.
func (g *groupSet) all() iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, n := range g.few {
			if !yield(n) {
				return
			}
		}
		for n := range g.many {
			if !yield(n) {
				return
			}
		}
	}
}
