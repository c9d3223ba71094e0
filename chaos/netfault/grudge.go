package netfault

import (
	"fmt"
	"sort"
	"strings"
)

// Grudge is Jepsen's partition model: for each node, the nodes whose
// packets it drops. Every entry is one-directional: Grudge{1: {0}} means
// node 1 drops what node 0 sends it, while node 1's packets still reach
// node 0. A symmetric cut is two entries. Nodes are indexes 0..n-1; the
// harness (the bridge address) is never in a grudge.
type Grudge map[int][]int

// Pair is one directed link, packets from From to To.
type Pair struct{ From, To int }

// Pairs lists the grudge's directed links (the packets that are dropped),
// deduplicated and sorted, without self-links.
func (g Grudge) Pairs() []Pair {
	seen := map[Pair]bool{}
	var ps []Pair
	for to, froms := range g {
		for _, from := range froms {
			p := Pair{From: from, To: to}
			if from == to || seen[p] {
				continue
			}
			seen[p] = true
			ps = append(ps, p)
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].From != ps[j].From {
			return ps[i].From < ps[j].From
		}
		return ps[i].To < ps[j].To
	})
	return ps
}

// Drops reports whether node to drops packets from node from.
func (g Grudge) Drops(to, from int) bool {
	for _, f := range g[to] {
		if f == from && from != to {
			return true
		}
	}
	return false
}

// String renders the grudge as "n1 drops 0,2; n3 drops 0" in node order.
func (g Grudge) String() string {
	byTo := map[int][]string{}
	var tos []int
	for _, p := range g.Pairs() {
		if _, ok := byTo[p.To]; !ok {
			tos = append(tos, p.To)
		}
		byTo[p.To] = append(byTo[p.To], fmt.Sprint(p.From))
	}
	sort.Ints(tos)
	parts := make([]string, len(tos))
	for i, to := range tos {
		parts[i] = fmt.Sprintf("n%d drops %s", to, strings.Join(byTo[to], ","))
	}
	if len(parts) == 0 {
		return "no grudge"
	}
	return strings.Join(parts, "; ")
}

// Merge returns the union of grudges.
func Merge(gs ...Grudge) Grudge {
	out := Grudge{}
	for _, g := range gs {
		for to, froms := range g {
			out[to] = append(out[to], froms...)
		}
	}
	return out.normalize()
}

// Symmetric returns g plus every entry reversed, so each cut goes both ways.
func (g Grudge) Symmetric() Grudge {
	out := Grudge{}
	for _, p := range g.Pairs() {
		out[p.To] = append(out[p.To], p.From)
		out[p.From] = append(out[p.From], p.To)
	}
	return out.normalize()
}

// Relabel maps node i to perm[i] (perm is a permutation of 0..n-1), to
// aim a shape at other nodes, for example a shuffled ring or the leader.
func (g Grudge) Relabel(perm []int) Grudge {
	out := Grudge{}
	for _, p := range g.Pairs() {
		out[perm[p.To]] = append(out[perm[p.To]], perm[p.From])
	}
	return out.normalize()
}

func (g Grudge) normalize() Grudge {
	out := Grudge{}
	for _, p := range g.Pairs() {
		out[p.To] = append(out[p.To], p.From)
	}
	return out
}

// Components builds the grudge in which every node drops every node it
// shares no component with (Jepsen's complete-grudge). A node in two
// components (a bridge) hears both; a node in none is cut from everyone.
func Components(n int, comps ...[]int) Grudge {
	member := make([]map[int]bool, n)
	for i := range member {
		member[i] = map[int]bool{}
	}
	for ci, c := range comps {
		for _, i := range c {
			if i >= 0 && i < n {
				member[i][ci] = true
			}
		}
	}
	g := Grudge{}
	for to := 0; to < n; to++ {
		for from := 0; from < n; from++ {
			if from == to {
				continue
			}
			shared := false
			for ci := range member[to] {
				if member[from][ci] {
					shared = true
					break
				}
			}
			if !shared {
				g[to] = append(g[to], from)
			}
		}
	}
	return g
}

// Isolate cuts node i from every other node, both ways (2(n-1) entries).
func Isolate(n, i int) Grudge {
	g := Grudge{}
	for j := 0; j < n; j++ {
		if j != i {
			g[i] = append(g[i], j)
			g[j] = append(g[j], i)
		}
	}
	return g
}

// Split is a clean two-way split: groupA on one side, every other node on
// the other.
func Split(n int, groupA ...int) Grudge {
	in := map[int]bool{}
	for _, i := range groupA {
		in[i] = true
	}
	var b []int
	for i := 0; i < n; i++ {
		if !in[i] {
			b = append(b, i)
		}
	}
	return Components(n, groupA, b)
}

// MajoritiesRing arranges the nodes in a ring (0, 1, ..., n-1) where every
// node sees a majority (itself and its neighbours) but no two nodes see the
// same majority (Jepsen's majorities-ring, without the shuffle: use
// Relabel for another ring order). For 5 nodes each node hears i-1 and
// i+1: 10 one-way entries. For even n the window is not centred and the
// grudge is not symmetric, as in Jepsen.
func MajoritiesRing(n int) Grudge {
	m := n/2 + 1
	g := Grudge{}
	for i := 0; i < n; i++ {
		sees := map[int]bool{}
		for k := 0; k < m; k++ {
			sees[((i-m/2+k)%n+n)%n] = true
		}
		for j := 0; j < n; j++ {
			if !sees[j] {
				g[i] = append(g[i], j)
			}
		}
	}
	return g
}

// Bridge splits the nodes in two halves joined by one node that hears
// both: for 5 nodes {0,1} + 2 + {3,4} (8 entries). It needs n >= 3.
func Bridge(n int) Grudge {
	mid := n / 2
	var a, b []int
	for i := 0; i <= mid; i++ {
		a = append(a, i)
	}
	for i := mid; i < n; i++ {
		b = append(b, i)
	}
	return Components(n, a, b)
}

// OneWay drops every packet from node from to node to; to's packets
// still reach from.
func OneWay(from, to int) Grudge {
	return Grudge{to: {from}}
}
