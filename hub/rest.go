package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/raftplane/raftplane/fsm"
)

// api wraps a REST handler with the API key check and the hub name check.
func (s *Server) api(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkAPIKey(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="raftplane"`)
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		}
		if hub := r.PathValue("hub"); hub != "" {
			if err := validHub(hub); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
		h(w, r)
	}
}

// sendBody is the body of every REST send (Azure SignalR's shape).
type sendBody struct {
	Target    string          `json:"target"`
	Arguments json.RawMessage `json:"arguments"`
	Excluded  []string        `json:"excluded"`
}

// parseSendBody validates a send body: a non-empty target, arguments an
// array (absent means none), at most fsm.MaxExclude excluded connection ids
// of 1 to maxGroupLen bytes (a connection id's limit) each. The log refuses
// a longer list; with a large MaxBodySize the body alone would not.
func parseSendBody(b []byte) (sendBody, error) {
	var sb sendBody
	if err := json.Unmarshal(b, &sb); err != nil {
		return sb, fmt.Errorf("invalid JSON body: %v", err)
	}
	if sb.Target == "" {
		return sb, errors.New(`body needs a non-empty "target"`)
	}
	if len(sb.Target) > maxTargetLen {
		return sb, fmt.Errorf(`"target" is longer than %d bytes`, maxTargetLen)
	}
	args := sb.Arguments
	switch {
	case len(args) == 0 || string(args) == "null":
		sb.Arguments = json.RawMessage("[]")
	default:
		var arr []json.RawMessage
		if err := json.Unmarshal(args, &arr); err != nil {
			return sb, errors.New(`"arguments" must be a JSON array`)
		}
		sb.Arguments = json.RawMessage(joinArgs(arr)) // compact, validated
	}
	if len(sb.Excluded) > fsm.MaxExclude {
		return sb, fmt.Errorf(`"excluded" holds %d connection ids, more than the limit of %d`, len(sb.Excluded), fsm.MaxExclude)
	}
	for _, x := range sb.Excluded {
		if x == "" {
			return sb, errors.New(`"excluded" holds an empty connection id`)
		}
		if len(x) > maxGroupLen {
			return sb, fmt.Errorf(`"excluded" holds a connection id longer than %d bytes`, maxGroupLen)
		}
	}
	return sb, nil
}

func (s *Server) readSend(w http.ResponseWriter, r *http.Request) (sendBody, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodySize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds the limit of %d bytes", s.cfg.MaxBodySize))
		} else {
			writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		}
		return sendBody{}, false
	}
	sb, err := parseSendBody(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return sendBody{}, false
	}
	return sb, true
}

func checkName(w http.ResponseWriter, what, v string, max int) bool {
	if v == "" || len(v) > max {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s must be 1-%d bytes", what, max))
		return false
	}
	return true
}

// IdempotencyHeader names the request header that makes a REST send safe to
// retry: sends of one hub with the same key within fsm.DedupWindow are
// applied once, and every retry answers with the cursor of the first.
const IdempotencyHeader = "Idempotency-Key"

// maxIdempotencyKeyLen bounds an idempotency key.
const maxIdempotencyKeyLen = 128

func (s *Server) send(w http.ResponseWriter, r *http.Request, a fsm.Audience, key string) {
	idem := r.Header.Get(IdempotencyHeader)
	if len(idem) > maxIdempotencyKeyLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s is longer than %d bytes", IdempotencyHeader, maxIdempotencyKeyLen))
		return
	}
	sb, ok := s.readSend(w, r)
	if !ok {
		return
	}
	s.stats.restReceived.Add(1) // stats.go
	hub := r.PathValue("hub")
	cmd := fsm.Publish(hub, a, key, sb.Target, sb.Arguments, sb.Excluded)
	if idem != "" {
		// The prefix keeps client keys apart from the ids nodes generate
		// and from other hubs' keys.
		cmd.ID = "idem:" + hub + ":" + idem
	}
	s.commit(w, r, cmd)
}

// commit publishes a command and answers with its cursor once it is applied.
func (s *Server) commit(w http.ResponseWriter, r *http.Request, cmd fsm.Command) {
	if err := s.accepting(); err != nil && !errors.Is(err, errShuttingDown) {
		writeUnavailable(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	defer cancel()
	cur, err := s.pub.Publish(ctx, cmd)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]string{"cursor": cur.Format(s.stream.Epoch())})
	case errors.Is(err, fsm.ErrInvalid):
		// Refused before the log (the checks above should have caught it).
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, fsm.ErrRejected):
		writeError(w, http.StatusInternalServerError, "the log rejected the command as malformed; it was not applied: "+err.Error())
	case errors.Is(err, fsm.ErrUnknownConnection):
		id := cmd.Key
		if cmd.Kind != fsm.KindPublish {
			id = cmd.Conn
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("connection %q not found in hub %q", id, cmd.Hub))
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, "timed out waiting for commit; the command may or may not have been applied")
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, "request canceled")
	default:
		writeError(w, http.StatusServiceUnavailable, "cluster unavailable: "+err.Error())
	}
}

func (s *Server) handleSendAll(w http.ResponseWriter, r *http.Request) {
	s.send(w, r, fsm.AudienceAll, "")
}

func (s *Server) handleSendGroup(w http.ResponseWriter, r *http.Request) {
	if g := r.PathValue("group"); checkName(w, "group", g, maxGroupLen) {
		s.send(w, r, fsm.AudienceGroup, g)
	}
}

func (s *Server) handleSendUser(w http.ResponseWriter, r *http.Request) {
	if u := r.PathValue("user"); checkName(w, "user", u, maxUserLen) {
		s.send(w, r, fsm.AudienceUser, u)
	}
}

func (s *Server) handleSendConnection(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("id"); checkName(w, "connection id", id, maxGroupLen) {
		s.send(w, r, fsm.AudienceConnection, id)
	}
}

// groupChange commits the join or leave that change builds
// (fsm.GroupJoin, fsm.GroupLeave).
func (s *Server) groupChange(w http.ResponseWriter, r *http.Request, change func(hub, conn, group string) fsm.Command) {
	g, id := r.PathValue("group"), r.PathValue("id")
	if !checkName(w, "group", g, maxGroupLen) || !checkName(w, "connection id", id, maxGroupLen) {
		return
	}
	cmd := change(r.PathValue("hub"), id, g)
	if cmd.Kind == fsm.KindGroupJoin {
		if le := s.checkJoin(cmd.Hub, id, g); le != nil { // limits.go: 409
			writeLimit(w, le)
			return
		}
	}
	s.commit(w, r, cmd)
}

func (s *Server) handleGroupAdd(w http.ResponseWriter, r *http.Request) {
	s.groupChange(w, r, fsm.GroupJoin)
}

func (s *Server) handleGroupRemove(w http.ResponseWriter, r *http.Request) {
	s.groupChange(w, r, fsm.GroupLeave)
}

func (s *Server) handleCloseConnection(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !checkName(w, "connection id", id, maxGroupLen) {
		return
	}
	reason := r.URL.Query().Get("reason")
	if len(reason) > 1024 {
		writeError(w, http.StatusBadRequest, "reason is longer than 1024 bytes")
		return
	}
	if reason == "" {
		reason = "closed through the REST API"
	}
	s.commit(w, r, fsm.ConnClose(r.PathValue("hub"), id, reason))
}

func (s *Server) handleGetConnection(w http.ResponseWriter, r *http.Request) {
	ci, ok := s.reg.Connection(r.PathValue("hub"), r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "connection not found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"connectionId": ci.ID, "user": ci.User, "node": ci.Node, "groups": nonNil(ci.Groups),
		"opened": ci.Opened.Format(s.stream.Epoch()),
	})
}

func (s *Server) handleGetGroup(w http.ResponseWriter, r *http.Request) {
	ids := s.reg.GroupConnections(r.PathValue("hub"), r.PathValue("group"))
	if len(ids) == 0 {
		writeError(w, http.StatusNotFound, "group has no connections")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"connections": ids})
}

func (s *Server) handleGetUser(w http.ResponseWriter, r *http.Request) {
	ids := s.reg.UserConnections(r.PathValue("hub"), r.PathValue("user"))
	if len(ids) == 0 {
		writeError(w, http.StatusNotFound, "user has no connections")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"connections": ids})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// historyMessage is one message of a history read.
type historyMessage struct {
	Cursor    string          `json:"cursor"`
	Target    string          `json:"target"`
	Arguments json.RawMessage `json:"arguments"`
}

const (
	defaultHistoryLimit = 100
	maxHistoryLimit     = 1000
)

// handleGroupHistory serves GET /api/v1/hubs/{hub}/groups/{group}/messages
// ?after=<cursor>&limit=<n>: the messages sent to the group after the cursor
// that are still in this node's cache, oldest first. "next" is the cursor to
// continue from. A cursor older than the cache or from another cluster gets
// 410 with the oldest cursor available, never a silent gap.
func (s *Server) handleGroupHistory(w http.ResponseWriter, r *http.Request) {
	hub, group := r.PathValue("hub"), r.PathValue("group")
	if !checkName(w, "group", group, maxGroupLen) {
		return
	}
	limit := defaultHistoryLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxHistoryLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be 1-%d", maxHistoryLimit))
			return
		}
		limit = n
	}
	pos := s.stream.Position()
	if pos.Epoch == "" {
		writeUnavailable(w, errNotReady)
		return
	}
	after := pos.Floor
	if v := r.URL.Query().Get("after"); v != "" {
		epoch, c, err := fsm.ParseCursor(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if epoch != pos.Epoch {
			writeGone(w, fmt.Sprintf("cursor %s is from another cluster (epoch %s; this cluster is %s)", v, epoch, pos.Epoch), pos)
			return
		}
		after = c
	}
	out := []historyMessage{}
	next := after
	for len(out) < limit {
		entries, err := s.stream.Since(next, dispatchBatch)
		if errors.Is(err, fsm.ErrCursorTooOld) {
			writeGone(w, "cursor expired: "+err.Error(), s.stream.Position())
			return
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if len(entries) == 0 {
			break
		}
		for i := range entries {
			e := &entries[i]
			next = e.Cursor
			if e.Err == nil && e.Kind == fsm.KindPublish && e.Audience == fsm.AudienceGroup && e.Hub == hub && e.Key == group {
				out = append(out, historyMessage{Cursor: e.Cursor.Format(pos.Epoch), Target: e.Target, Arguments: json.RawMessage(e.Args)})
				if len(out) == limit {
					break
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": out, "next": next.Format(pos.Epoch)})
}

// writeGone answers 410 with the oldest cursor still available.
func writeGone(w http.ResponseWriter, msg string, pos fsm.Position) {
	writeJSON(w, http.StatusGone, map[string]string{
		"code": "Gone", "message": msg, "oldest": pos.Floor.Format(pos.Epoch),
	})
}
