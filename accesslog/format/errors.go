package format

import "fmt"

// Error is a compile error: what was wrong and the byte offset in the format
// string (or the JSON key path) where it was found.
type Error struct {
	// Key is the JSON dictionary path of the value ("a.b"), "" for a text format.
	Key string
	// Pos is the byte offset of the offending operator within the value.
	Pos int
	Msg string
}

func (e *Error) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("format: key %q: position %d: %s", e.Key, e.Pos, e.Msg)
	}
	return fmt.Sprintf("format: position %d: %s", e.Pos, e.Msg)
}
