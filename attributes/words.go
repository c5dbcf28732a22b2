package attributes

import "fmt"

// WordEncoder assigns word indexes for one message: a word of the first
// globalWordCount global words gets its global index, any other word a
// negative index into the message's own word list (-1 is Words()[0]).
// It is not safe for concurrent use.
type WordEncoder struct {
	global uint32
	words  []string
	local  map[string]int32 // built once words grows past linearLimit
}

// linearLimit is how many local words are searched linearly before a map
// is built; most messages have fewer.
const linearLimit = 16

// NewWordEncoder returns an encoder for a peer that knows globalWordCount
// global words (at most len(GlobalDictionary) are used).
func NewWordEncoder(globalWordCount uint32) *WordEncoder {
	return &WordEncoder{global: min(globalWordCount, GlobalWordCount())}
}

// Index returns the index of w, adding it to the local words if needed.
func (e *WordEncoder) Index(w string) int32 {
	if i, ok := globalIndex[w]; ok && uint32(i) < e.global {
		return i
	}
	if e.local != nil {
		if i, ok := e.local[w]; ok {
			return i
		}
	} else {
		for i, lw := range e.words {
			if lw == w {
				return -int32(i) - 1
			}
		}
	}
	e.words = append(e.words, w)
	idx := -int32(len(e.words))
	switch {
	case e.local != nil:
		e.local[w] = idx
	case len(e.words) > linearLimit:
		e.local = make(map[string]int32, 2*len(e.words))
		for i, lw := range e.words {
			e.local[lw] = -int32(i) - 1
		}
	}
	return idx
}

// Words returns the local words in index order. The slice belongs to the
// encoder until Reset.
func (e *WordEncoder) Words() []string { return e.words }

// Reset forgets the local words, keeping the global word count.
func (e *WordEncoder) Reset() {
	e.words = nil
	e.local = nil
}

// WordDecoder resolves word indexes for one message.
type WordDecoder struct {
	global []string
	local  []string
}

// NewWordDecoder returns a decoder for a message whose sender knew
// globalWordCount global words and which carries words as its own list.
func NewWordDecoder(globalWordCount uint32, words []string) (WordDecoder, error) {
	if globalWordCount > GlobalWordCount() {
		return WordDecoder{}, &DecodeError{Element: -1, Err: ErrWordCount,
			Detail: fmt.Sprintf("global_word_count is %d but this server knows %d global words", globalWordCount, GlobalWordCount())}
	}
	return WordDecoder{global: GlobalDictionary[:globalWordCount], local: words}, nil
}

// Word returns the word at index i, or an error saying why there is none.
func (d WordDecoder) Word(i int32) (string, error) {
	if i >= 0 {
		if int64(i) < int64(len(d.global)) {
			return d.global[i], nil
		}
		return "", fmt.Errorf("global index %d is beyond global_word_count %d", i, len(d.global))
	}
	j := -int64(i) - 1
	if j < int64(len(d.local)) {
		return d.local[j], nil
	}
	return "", fmt.Errorf("index %d names local word %d but the message has %d words", i, j, len(d.local))
}
