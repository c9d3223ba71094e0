//go:build chaos_nodedup

package fsm

// skipDedup: this build is deliberately broken. The FSM forgets no command
// ID and so applies retried commands twice; the chaos suite builds it to
// prove that its checker reports the duplicates. Never ship it.
const skipDedup = true
