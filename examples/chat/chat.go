package main

import (
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/raftplane/raftplane/hub"
)

// The chat hub: what an ASP.NET Core app would write as a Hub class.
//
//	Join(room)        joins a room and tells it; returns the room's group name
//	Leave(room)       leaves it
//	Send(room, text)  validates and rate-limits, then sends "message"(room, user, text) to the room
//	Whoami()          returns the caller's user id
//
// Every send and group change a method makes goes through the Raft log with
// the method's Completion, so every client on every node sees them in one
// order, and a message a client resends after a reconnect is applied once.

// chat holds the per-node rate limiter: a user connected to several nodes
// gets the limit on each (a cluster-wide limit would need the log itself).
type chat struct {
	maxText int           // runes per message
	burst   int           // messages a user may send at once
	every   time.Duration // one more message allowed per this interval
	mu      sync.Mutex
	buckets map[string]*bucket
	now     func() time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newChat(maxText, burst int, every time.Duration) *chat {
	return &chat{maxText: maxText, burst: burst, every: every, buckets: map[string]*bucket{}, now: time.Now}
}

// allow takes a token from the user's bucket.
func (c *chat) allow(user string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	b := c.buckets[user]
	if b == nil {
		b = &bucket{tokens: float64(c.burst), at: now}
		c.buckets[user] = b
	}
	b.tokens = min(float64(c.burst), b.tokens+float64(now.Sub(b.at))/float64(c.every))
	b.at = now
	if len(c.buckets) > 100000 { // forget idle users now and then
		for u, x := range c.buckets {
			if now.Sub(x.at) > time.Duration(c.burst)*c.every {
				delete(c.buckets, u)
			}
		}
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// validRoom: 1 to 32 lower-case letters, digits and dashes.
func validRoom(r string) bool {
	if r == "" || len(r) > 32 {
		return false
	}
	for _, ch := range r {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-') {
			return false
		}
	}
	return true
}

func (c *chat) handlers() hub.Handlers {
	return hub.Handlers{
		OnConnected: func(ctx *hub.Context) error {
			if ctx.User == "" {
				return hub.Errorf("sign in first: connect with ?user=<name> (or a JWT)")
			}
			return ctx.Clients().Caller().Send("welcome", ctx.User)
		},
		Methods: map[string]hub.Method{
			"Join": func(ctx *hub.Context, args hub.Args) (any, error) {
				var room string
				if err := args.Bind(&room); err != nil {
					return nil, err
				}
				if !validRoom(room) {
					return nil, hub.Errorf("room names are 1 to 32 of a-z, 0-9 and -")
				}
				if err := ctx.Groups().Add(ctx.ConnectionID, "room:"+room); err != nil {
					return nil, err
				}
				return "room:" + room, ctx.Clients().Group("room:"+room).Send("joined", room, ctx.User)
			},
			"Leave": func(ctx *hub.Context, args hub.Args) (any, error) {
				var room string
				if err := args.Bind(&room); err != nil {
					return nil, err
				}
				if !validRoom(room) {
					return nil, hub.Errorf("room names are 1 to 32 of a-z, 0-9 and -")
				}
				if err := ctx.Clients().OthersInGroup("room:"+room).Send("left", room, ctx.User); err != nil {
					return nil, err
				}
				return nil, ctx.Groups().Remove(ctx.ConnectionID, "room:"+room)
			},
			"Send": func(ctx *hub.Context, args hub.Args) (any, error) {
				var room, text string
				if err := args.Bind(&room, &text); err != nil {
					return nil, err
				}
				text = strings.TrimSpace(text)
				switch {
				case !validRoom(room):
					return nil, hub.Errorf("room names are 1 to 32 of a-z, 0-9 and -")
				case text == "":
					return nil, hub.Errorf("empty message")
				case utf8.RuneCountInString(text) > c.maxText:
					return nil, hub.Errorf("message longer than %d characters", c.maxText)
				case !c.allow(ctx.User):
					return nil, hub.Errorf("slow down: at most %d messages at once, then one every %s", c.burst, c.every)
				}
				return nil, ctx.Clients().Group("room:"+room).Send("message", room, ctx.User, text)
			},
			"Whoami": func(ctx *hub.Context, _ hub.Args) (any, error) { return ctx.User, nil },
		},
	}
}
