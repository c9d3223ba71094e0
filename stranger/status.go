package stranger

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/raftplane/raftplane/status"
)

// Status is the part of GET /api/v1/status the attacks and tests read.
type Status struct {
	Node   status.Node   `json:"node"`
	Stream status.Stream `json:"stream"`
}

// FetchStatus reads GET /api/v1/status from a node's HTTP base URL
// (http://host:port), with the API key when one is set. The HTTP port is
// public, so a stranger may read it too: it learns the term, the indexes
// and the node id from it.
func FetchStatus(ctx context.Context, baseURL, apiKey string) (Status, error) {
	var st Status
	url := strings.TrimRight(baseURL, "/") + "/api/v1/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return st, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("GET %s: %w", url, err)
	}
	return st, nil
}
