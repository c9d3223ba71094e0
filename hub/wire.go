package hub

import "fmt"

// wireError is an error whose text goes to the client as it is: in a
// handshake response, a Close message, a Completion or an HTTP body. Its
// wording follows ASP.NET Core's (capitals, full stops), which official
// clients show to users and tests match, so it is made here, at the edge,
// and not by wrapping internal errors.
type wireError string

func (e wireError) Error() string { return string(e) }

// wireErrorf formats a wireError.
func wireErrorf(format string, args ...any) error {
	return wireError(fmt.Sprintf(format, args...))
}
