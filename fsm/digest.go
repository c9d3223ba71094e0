package fsm

// digest folds one applied command into the running digest with 64-bit
// FNV-1a, written out because hash/fnv would allocate a hasher per command
// on the apply path.
func digest(h uint64, e *Entry) uint64 {
	const prime = 1099511628211
	if h == 0 {
		h = 14695981039346656037
	}
	mix := func(b byte) { h = (h ^ uint64(b)) * prime }
	for i := 0; i < 8; i++ {
		mix(byte(e.Cursor.Index >> (8 * i)))
	}
	for i := 0; i < 4; i++ {
		mix(byte(e.Cursor.Offset >> (8 * i)))
	}
	mix(byte(e.Command.Kind))
	for i := 0; i < len(e.Command.ID); i++ {
		mix(e.Command.ID[i])
	}
	if e.Err != nil {
		mix(1)
	} else {
		mix(0)
	}
	return h
}
