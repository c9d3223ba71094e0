//go:build !chaos_nodedup

package fsm

// skipDedup is true only in a deliberately broken build (tag chaos_nodedup)
// that the chaos suite uses to prove its checker catches duplicates.
const skipDedup = false
