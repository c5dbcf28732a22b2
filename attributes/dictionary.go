package attributes

import (
	_ "embed"
	"slices"
	"strings"
)

//go:embed global_dictionary.txt
var globalDictionaryText string

// GlobalDictionary is Istio Mixer's global word list (istio/api 1.7.8): index
// i on the wire names GlobalDictionary[i]. It must never be modified.
var GlobalDictionary = parseDictionary(globalDictionaryText)

// globalIndex maps a word to its global index.
var globalIndex = func() map[string]int32 {
	m := make(map[string]int32, len(GlobalDictionary))
	for i, w := range GlobalDictionary {
		if _, dup := m[w]; !dup {
			m[w] = int32(i)
		}
	}
	return m
}()

// globalRank[i] is the position of GlobalDictionary[i] in sorted order
// (equal words have equal ranks), so that decoders order global names by
// comparing integers instead of strings.
var globalRank = func() []int32 {
	idx := make([]int, len(GlobalDictionary))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(GlobalDictionary[a], GlobalDictionary[b]) })
	rank := make([]int32, len(GlobalDictionary))
	r := int32(0)
	for j, i := range idx {
		if j > 0 && GlobalDictionary[i] != GlobalDictionary[idx[j-1]] {
			r++
		}
		rank[i] = r
	}
	return rank
}()

// globalVocabulary[i] is Vocabulary[GlobalDictionary[i]], KindInvalid when
// the word is no vocabulary attribute.
var globalVocabulary = func() []Kind {
	kinds := make([]Kind, len(GlobalDictionary))
	for i, w := range GlobalDictionary {
		kinds[i] = Vocabulary[w]
	}
	return kinds
}()

// parseDictionary reads one word per line, skipping '#' comment lines.
// Words are taken verbatim (they may contain spaces and quotes).
func parseDictionary(text string) []string {
	var words []string
	for line := range strings.Lines(text) {
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		words = append(words, line)
	}
	return words
}

// GlobalWordCount is the number of global words this build knows; the
// value senders put in global_word_count.
func GlobalWordCount() uint32 { return uint32(len(GlobalDictionary)) }
