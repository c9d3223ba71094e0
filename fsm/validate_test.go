package fsm

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestCommand_ValidateEncodingRules(t *testing.T) {
	pub := func(edit func(*Command)) Command {
		c := Command{Kind: KindPublish, Hub: "h", Audience: AudienceAll, Target: "t", Args: []byte(`[]`)}
		edit(&c)
		return c
	}
	ids := func(n int) []string { return strings.Fields(strings.Repeat("c ", n)) }
	tests := []struct {
		name    string
		cmd     Command
		wantErr string // "" for valid
		decodes bool   // whether the encoding decodes (checked for invalid ones too)
	}{
		{name: "exclude at the limit", cmd: pub(func(c *Command) { c.Exclude = ids(MaxExclude) }), decodes: true},
		{name: "exclude over the limit", cmd: pub(func(c *Command) { c.Exclude = ids(MaxExclude + 1) }),
			wantErr: "65537 excluded connection ids, the limit is 65536"},
		{name: "stray field on a publish", cmd: pub(func(c *Command) { c.Conn = "c" }),
			wantErr: "a publish command does not carry Conn", decodes: true},
		{name: "stray secret on a join", cmd: Command{Kind: KindGroupJoin, Hub: "h", Conn: "c", Group: "g", Secret: []byte{1}},
			wantErr: "a group-join command does not carry Secret", decodes: true},
		{name: "origin on a conn-close", cmd: Command{Kind: KindConnClose, Hub: "h", Conn: "c", Origin: Origin{Conn: "c", Seq: 1}},
			wantErr: "does not carry Origin", decodes: true},
		{name: "origin without a sequence number", cmd: pub(func(c *Command) { c.Origin = Origin{Conn: "c", InvocationID: "1"} }),
			wantErr: "origin without a sequence number", decodes: true},
		{name: "origin without a connection", cmd: pub(func(c *Command) { c.Origin = Origin{Seq: 1} }),
			wantErr: "origin without a connection"},
		{name: "reject without an origin", cmd: Command{Kind: KindReject, Hub: "h", Reason: "r"}, wantErr: "reject without an origin"},
		{name: "audience 0", cmd: pub(func(c *Command) { c.Audience = 0 }), wantErr: "unknown audience 0"},
		{name: "kind 0", cmd: Command{Hub: "h"}, wantErr: "unknown kind 0"},
		{name: "kind 12", cmd: Command{Kind: 12, Hub: "h"}, wantErr: "unknown kind 12"},
		{name: "ignorable kind", cmd: Command{Kind: 200, Hub: "h"}, wantErr: "unknown kind 200", decodes: true},
		{name: "empty excluded id", cmd: pub(func(c *Command) { c.Exclude = []string{""} }), decodes: true},
		{name: "extreme times and cursors", cmd: Command{Kind: KindConnAck, Hub: "h", Conn: "c", Time: math.MinInt64,
			AckSeq: math.MaxUint64, From: Cursor{Index: math.MaxUint64, Offset: math.MaxUint32}}, decodes: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cmd.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			case err != nil && !errors.Is(err, ErrInvalid):
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			got, derr := DecodeBatch(EncodeBatch([]Command{tc.cmd}))
			if (derr == nil) != tc.decodes {
				t.Fatalf("DecodeBatch error = %v, want decodes=%v", derr, tc.decodes)
			}
			if err == nil && !reflect.DeepEqual(normalizeAll(got), normalizeAll([]Command{tc.cmd})) {
				t.Fatalf("round trip changed a valid command: %+v", got)
			}
		})
	}
}

// TestCommand_ValidateSizeLimit: the encoding of one command is bounded (the
// decoder reads it as one field), so Validate measures the whole command,
// not only each field.
func TestCommand_ValidateSizeLimit(t *testing.T) {
	base := Command{Kind: KindPublish, ID: "id", Hub: "h", Audience: AudienceAll, Target: "t"}
	// Args of L bytes add L plus the growth of its length prefix (1 byte
	// for 0, 4 bytes for a length near 64 MiB).
	fit := MaxCommandBytes - EncodedSize(&base) - 3
	for _, tc := range []struct {
		name  string
		extra int
		ok    bool
	}{
		{"at the limit", 0, true},
		{"one byte over", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.Args = make([]byte, fit+tc.extra)
			if got := EncodedSize(&c); got != MaxCommandBytes+tc.extra {
				t.Fatalf("EncodedSize = %d, want %d", got, MaxCommandBytes+tc.extra)
			}
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "its largest field, Args") {
				t.Errorf("error %q does not name the field", err)
			}
			if testing.Short() {
				return
			}
			_, derr := DecodeBatch(EncodeBatch([]Command{c}))
			if (derr == nil) != tc.ok {
				t.Fatalf("DecodeBatch error = %v, want ok=%v: Validate and the decoder disagree", derr, tc.ok)
			}
		})
	}
	// Many fields each under the limit can add up to more than it.
	c := base
	c.Key, c.Args = strings.Repeat("k", MaxCommandBytes/2), make([]byte, MaxCommandBytes/2)
	if err := c.Validate(); err == nil {
		t.Fatal("Validate accepted a command whose fields add up to more than MaxCommandBytes")
	}
}

func TestValidateBatch(t *testing.T) {
	ok := Command{Kind: KindPublish, Hub: "h", Audience: AudienceAll, Target: "t"}
	bad := Command{Kind: KindPublish, Hub: "h", Audience: AudienceAll}
	if err := ValidateBatch([]Command{ok, ok}); err != nil {
		t.Fatalf("ValidateBatch(valid) = %v", err)
	}
	if err := ValidateBatch([]Command{ok, bad}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "command 1:") {
		t.Fatalf("ValidateBatch(one invalid) = %v, want ErrInvalid naming command 1", err)
	}
	err := ValidateBatch(make([]Command, MaxBatchCommands+1))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "1048577 commands in one entry") {
		t.Fatalf("ValidateBatch(too many) = %v", err)
	}
}

// genCommand returns a random command: usually a kind's own fields, now and
// then a field the kind does not carry, odd origins and cursors, extreme
// times, long and binary strings, exclude lists at and over the limit.
func genCommand(r *rand.Rand) Command {
	str := func() string {
		switch r.IntN(10) {
		case 0:
			return ""
		case 1:
			return "a:b\x00\xff"
		case 2:
			return strings.Repeat("x", 200+r.IntN(300))
		}
		b := make([]byte, 1+r.IntN(12))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	kinds := []Kind{0, KindClusterInit, KindPublish, KindGroupJoin, KindGroupLeave, KindConnOpen, KindConnClose,
		KindConnResume, KindReject, KindConnAck, KindInvoke, KindEventsDone, 12, KindIgnorable, 255}
	c := Command{Kind: kinds[r.IntN(len(kinds))], ID: str(), Hub: str()}
	switch r.IntN(4) {
	case 0:
		c.Time = []int64{0, 1, -1, math.MaxInt64, math.MinInt64}[r.IntN(5)]
	default:
		c.Time = r.Int64() - math.MaxInt64/2
	}
	want := carried(c.Kind)
	on := func(f fieldSet) bool {
		if want&f != 0 {
			return r.IntN(10) < 8
		}
		return r.IntN(40) == 0 // a stray field now and then
	}
	if on(fAudience) {
		c.Audience = Audience(r.IntN(6))
	}
	if on(fKey) {
		c.Key = str()
	}
	if on(fExclude) {
		switch r.IntN(200) {
		case 0:
			c.Exclude = make([]string, MaxExclude)
		case 1:
			c.Exclude = make([]string, MaxExclude+1)
		default:
			for range r.IntN(5) {
				c.Exclude = append(c.Exclude, str())
			}
		}
	}
	if on(fTarget) {
		c.Target = str()
	}
	if on(fArgs) {
		c.Args = []byte(str())
	}
	if on(fConn) {
		c.Conn = str()
	}
	if on(fGroup) {
		c.Group = str()
	}
	if on(fUser) {
		c.User = str()
	}
	if on(fNode) {
		c.Node = str()
	}
	if on(fReason) {
		c.Reason = str()
	}
	if on(fFrom) {
		c.From = Cursor{Index: r.Uint64() >> r.IntN(64), Offset: r.Uint32() >> r.IntN(32)}
	}
	if on(fAckSeq) {
		c.AckSeq = r.Uint64() >> r.IntN(64)
	}
	if on(fClusterID) {
		c.ClusterID = str()
	}
	if on(fSecret) {
		c.Secret = []byte(str())
	}
	if on(fEffects) && c.Kind != KindInvoke {
		// A stray one only: an invoke's effects must follow it in its
		// entry (ValidateBatch, TestInvoke_GroupShape).
		c.Effects = 1 + r.Uint32N(4)
	}
	if r.IntN(80) == 0 {
		c.Format = 2 // stray on every kind Validate accepts
	}
	if on(fOrigin) {
		c.Origin = Origin{Seq: uint64(r.IntN(3))}
		if r.IntN(5) > 0 {
			c.Origin.Conn = str()
		}
		if r.IntN(2) == 0 {
			c.Origin.InvocationID = str()
		}
	}
	return c
}

// TestValidate_RoundTripProperty: every command Validate accepts encodes
// (to EncodedSize bytes) and decodes back to an equal command, alone and in
// a batch. So does every command that breaks only the submitter rules
// (checkMeaning): those rules are not the codec's.
func TestValidate_RoundTripProperty(t *testing.T) {
	const n = 20000
	seed := uint64(0x5eed)
	r := rand.New(rand.NewPCG(seed, seed))
	var valid, wireOK int
	var batch []Command
	flush := func() {
		got, err := DecodeBatch(EncodeBatch(batch))
		if err != nil {
			t.Fatalf("seed %#x: a batch of %d valid commands does not decode: %v", seed, len(batch), err)
		}
		if !reflect.DeepEqual(normalizeAll(got), normalizeAll(batch)) {
			t.Fatalf("seed %#x: batch round trip changed the commands", seed)
		}
		if err := ValidateBatch(batch); err != nil {
			t.Fatalf("seed %#x: ValidateBatch = %v after every command passed Validate", seed, err)
		}
		batch = batch[:0]
	}
	for i := range n {
		c := genCommand(r)
		if c.checkEncoding() != nil {
			continue
		}
		wireOK++
		enc := EncodeCommand(&c)
		if len(enc) != EncodedSize(&c) {
			t.Fatalf("seed %#x, command %d: EncodedSize = %d, encoding has %d bytes: %+v", seed, i, EncodedSize(&c), len(enc), c)
		}
		got, err := DecodeCommand(enc)
		if err != nil {
			t.Fatalf("seed %#x, command %d: Validate's encoding rules accept %+v, the decoder refuses it: %v", seed, i, c, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(c)) {
			t.Fatalf("seed %#x, command %d: round trip\n got %+v\nwant %+v", seed, i, got, c)
		}
		if c.Validate() != nil {
			continue
		}
		valid++
		batch = append(batch, c)
		if len(batch) >= 1+r.IntN(8) {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	// The generator must reach both sides of the rules, or this proves
	// nothing.
	if valid < n/10 || wireOK == n {
		t.Fatalf("seed %#x: %d of %d generated commands valid, %d pass the encoding rules: generator too narrow", seed, valid, n, wireOK)
	}
	t.Logf("%d of %d random commands valid, %d pass the encoding rules", valid, n, wireOK)
}

// FuzzValidateAcceptsDecoded: whatever DecodeCommand accepts (below
// KindIgnorable) passes Validate's encoding rules, so Validate refuses it
// only for the submitter rules listed in its documentation (checkMeaning).
func FuzzValidateAcceptsDecoded(f *testing.F) {
	for _, c := range fuzzSeeds() {
		f.Add(EncodeCommand(&c))
	}
	f.Add(header(KindPublish))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil || c.Kind >= KindIgnorable {
			return
		}
		if err := c.checkEncoding(); err != nil {
			t.Fatalf("DecodeCommand accepts %+v, Validate's encoding rules refuse it: %v", c, err)
		}
		if v, m := c.Validate(), c.checkMeaning(); (v == nil) != (m == nil) {
			t.Fatalf("Validate() = %v, but the submitter rules say %v", v, m)
		}
	})
}
