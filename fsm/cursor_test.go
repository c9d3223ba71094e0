package fsm

import (
	"errors"
	"math"
	"testing"
)

func TestCursor_FormatParseRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		epoch string
		c     Cursor
		want  string
	}{
		{name: "zero", epoch: "e", c: Cursor{}, want: "e:0:0"},
		{name: "typical", epoch: "5f1c0a9e", c: Cursor{Index: 1042, Offset: 0}, want: "5f1c0a9e:1042:0"},
		{name: "offset", epoch: "cluster-1", c: Cursor{Index: 7, Offset: 63}, want: "cluster-1:7:63"},
		{name: "max index", epoch: "x", c: Cursor{Index: math.MaxUint64, Offset: 1}, want: "x:18446744073709551615:1"},
		{name: "max offset", epoch: "x", c: Cursor{Index: 1, Offset: math.MaxUint32}, want: "x:1:4294967295"},
		{name: "max both", epoch: "x", c: Cursor{Index: math.MaxUint64, Offset: math.MaxUint32}, want: "x:18446744073709551615:4294967295"},
		{name: "unicode epoch", epoch: "grüße", c: Cursor{Index: 3, Offset: 2}, want: "grüße:3:2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.Format(tt.epoch)
			if got != tt.want {
				t.Fatalf("Format(%q) = %q, want %q", tt.epoch, got, tt.want)
			}
			epoch, c, err := ParseCursor(got)
			if err != nil {
				t.Fatalf("ParseCursor(%q): %v", got, err)
			}
			if epoch != tt.epoch || c != tt.c {
				t.Fatalf("ParseCursor(%q) = %q, %v; want %q, %v", got, epoch, c, tt.epoch, tt.c)
			}
		})
	}
}

func TestParseCursor_Malformed(t *testing.T) {
	tests := []struct {
		name string
		s    string
	}{
		{name: "empty", s: ""},
		{name: "only epoch", s: "epoch"},
		{name: "missing offset", s: "epoch:1"},
		{name: "missing offset value", s: "epoch:1:"},
		{name: "missing index value", s: "epoch::0"},
		{name: "empty epoch", s: ":1:0"},
		{name: "all empty", s: "::"},
		{name: "too many parts", s: "epoch:1:0:0"},
		{name: "colon in epoch", s: "a:b:1:0"},
		{name: "non-numeric index", s: "epoch:x:0"},
		{name: "non-numeric offset", s: "epoch:1:y"},
		{name: "hex index", s: "epoch:0x10:0"},
		{name: "negative index", s: "epoch:-1:0"},
		{name: "negative offset", s: "epoch:1:-1"},
		{name: "plus sign", s: "epoch:+1:0"},
		{name: "space", s: "epoch: 1:0"},
		{name: "underscore digits", s: "epoch:1_000:0"},
		{name: "float", s: "epoch:1.5:0"},
		{name: "index overflow", s: "epoch:18446744073709551616:0"},
		{name: "offset overflow", s: "epoch:1:4294967296"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			epoch, c, err := ParseCursor(tt.s)
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("ParseCursor(%q) error = %v, want ErrBadCursor", tt.s, err)
			}
			if epoch != "" || c != (Cursor{}) {
				t.Fatalf("ParseCursor(%q) = %q, %v on error; want zero values", tt.s, epoch, c)
			}
		})
	}
}

func TestParseCursor_LeadingZeros(t *testing.T) {
	epoch, c, err := ParseCursor("e:007:01")
	if err != nil {
		t.Fatal(err)
	}
	if epoch != "e" || c != (Cursor{Index: 7, Offset: 1}) {
		t.Fatalf("got %q %v", epoch, c)
	}
}

func TestCursor_Less(t *testing.T) {
	tests := []struct {
		name string
		c, d Cursor
		want bool
	}{
		{name: "equal zero", c: Cursor{}, d: Cursor{}, want: false},
		{name: "equal", c: Cursor{5, 3}, d: Cursor{5, 3}, want: false},
		{name: "lower index", c: Cursor{4, 9}, d: Cursor{5, 0}, want: true},
		{name: "higher index", c: Cursor{6, 0}, d: Cursor{5, 9}, want: false},
		{name: "same index lower offset", c: Cursor{5, 2}, d: Cursor{5, 3}, want: true},
		{name: "same index higher offset", c: Cursor{5, 3}, d: Cursor{5, 2}, want: false},
		{name: "zero before first", c: Cursor{}, d: Cursor{1, 0}, want: true},
		{name: "zero before offset", c: Cursor{}, d: Cursor{0, 1}, want: true},
		{name: "max index", c: Cursor{math.MaxUint64 - 1, math.MaxUint32}, d: Cursor{math.MaxUint64, 0}, want: true},
		{name: "max offset", c: Cursor{1, math.MaxUint32 - 1}, d: Cursor{1, math.MaxUint32}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.Less(tt.d); got != tt.want {
				t.Fatalf("%v.Less(%v) = %v, want %v", tt.c, tt.d, got, tt.want)
			}
			// Less is a strict order: never both ways.
			if tt.c.Less(tt.d) && tt.d.Less(tt.c) {
				t.Fatalf("%v and %v are each less than the other", tt.c, tt.d)
			}
		})
	}
}

func TestCursor_IsZero(t *testing.T) {
	tests := []struct {
		name string
		c    Cursor
		want bool
	}{
		{name: "zero", c: Cursor{}, want: true},
		{name: "index", c: Cursor{Index: 1}, want: false},
		{name: "offset", c: Cursor{Offset: 1}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.IsZero(); got != tt.want {
				t.Fatalf("%v.IsZero() = %v, want %v", tt.c, got, tt.want)
			}
		})
	}
}

func TestCursor_String(t *testing.T) {
	if got, want := (Cursor{Index: 12, Offset: 3}).String(), "12:3"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}
