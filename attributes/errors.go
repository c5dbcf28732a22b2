package attributes

import (
	"errors"
	"fmt"
)

// Sentinel errors, wrapped by DecodeError and the forwarded-header errors.
var (
	// ErrIndex: a word index names no word.
	ErrIndex = errors.New("word index out of range")
	// ErrWordCount: global_word_count exceeds the words this build knows.
	ErrWordCount = errors.New("global word count exceeds the known dictionary")
	// ErrType: a vocabulary attribute arrived with another type.
	ErrType = errors.New("wrong value type")
	// ErrDuplicate: an attribute appears twice in one message.
	ErrDuplicate = errors.New("duplicate attribute")
	// ErrValue: a value is malformed (an IP of 5 bytes, a timestamp out of range ...).
	ErrValue = errors.New("invalid value")
	// ErrForwarded: an x-istio-attributes header cannot be decoded.
	ErrForwarded = errors.New("invalid forwarded attributes")
)

// DecodeError reports what could not be decoded and where.
type DecodeError struct {
	// Element is the index of the record in a report batch, -1 otherwise.
	Element int
	// Field is the CompressedAttributes map ("strings", "int64s" ...).
	Field string
	// Attribute is the decoded attribute name, "" if the name itself failed.
	Attribute string
	// Index is the offending word index, when an index was at fault.
	Index int32
	// Err is one of the package's sentinel errors.
	Err error
	// Detail says what exactly was wrong.
	Detail string
}

func (e *DecodeError) Error() string {
	where := ""
	if e.Element >= 0 {
		where = fmt.Sprintf("record %d: ", e.Element)
	}
	if e.Field != "" {
		where += e.Field + ": "
	}
	if e.Attribute != "" {
		where += fmt.Sprintf("attribute %q: ", e.Attribute)
	}
	return fmt.Sprintf("attributes: %s%v: %s", where, e.Err, e.Detail)
}

func (e *DecodeError) Unwrap() error { return e.Err }
