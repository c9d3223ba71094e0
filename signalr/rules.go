package signalr

// The per-type rules, one table for both protocols: which fields each
// message type requires or allows, and the shape of its body. parseMessage
// (JSON) and parseMsgpackMessage read every type through it, so a rule
// changes in one place.

// presence says whether a message type carries a field.
type presence uint8

const (
	absent   presence = iota // not part of the type: ignored (JSON) or not in the array (MessagePack)
	optional                 // may be missing (JSON) or nil (MessagePack)
	required
)

// body is the part of a message that depends on its type.
type body uint8

const (
	bodyNone       body = iota // Ping, CancelInvocation: nothing more
	bodyInvocation             // target (a non-empty string), arguments (an array), streamIds (optional array of strings)
	bodyItem                   // item: any value
	bodyCompletion             // result or error (a string), not both
	bodyClose                  // error (a string or null), allowReconnect (a boolean, optional)
	bodySequence               // sequenceId: a non-negative integer
)

// rule describes one message type.
type rule struct {
	// invocationID: in JSON "invocationId", a string when present; in
	// MessagePack element 2, a string or nil. Only the types that have one
	// carry the headers map as element 1 in MessagePack.
	invocationID presence
	// headers: JSON "headers" (an object of strings, or null) is read.
	headers bool
	body    body
	// minElements is the shortest MessagePack array of the type; elements
	// after the ones it defines are ignored.
	minElements int
}

var rules = [...]rule{
	TypeInvocation:       {invocationID: optional, headers: true, body: bodyInvocation, minElements: 5}, // [1, headers, id|nil, target, args, streamIds?]
	TypeStreamItem:       {invocationID: required, headers: true, body: bodyItem, minElements: 4},       // [2, headers, id, item]
	TypeCompletion:       {invocationID: required, headers: true, body: bodyCompletion, minElements: 4}, // [3, headers, id, kind, result?]
	TypeStreamInvocation: {invocationID: required, headers: true, body: bodyInvocation, minElements: 5}, // [4, headers, id, target, args, streamIds?]
	TypeCancelInvocation: {invocationID: required, headers: true, body: bodyNone, minElements: 3},       // [5, headers, id]
	TypePing:             {body: bodyNone, minElements: 1},                                              // [6]
	TypeClose:            {headers: true, body: bodyClose, minElements: 2},                              // [7, error|nil, allowReconnect?]
	TypeAck:              {headers: true, body: bodySequence, minElements: 2},                           // [8, sequenceId]
	TypeSequence:         {headers: true, body: bodySequence, minElements: 2},                           // [9, sequenceId]
}

// ruleOf returns the rule of a message type, or false for a type this
// package does not know (to be ignored by the caller).
func ruleOf(t int) (rule, bool) {
	if t < TypeInvocation || t > TypeSequence {
		return rule{}, false
	}
	return rules[t], true
}
