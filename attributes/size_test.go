package attributes

import (
	"testing"
	"unsafe"
)

// TestValueSize keeps Value and bag entries small: they are copied and
// sorted on every request.
func TestValueSize(t *testing.T) {
	if s := unsafe.Sizeof(Value{}); s > 24 {
		t.Errorf("Value is %d bytes, want at most 24", s)
	}
	if s := unsafe.Sizeof(entry{}); s > 40 {
		t.Errorf("entry is %d bytes, want at most 40", s)
	}
}

// TestValueAccessorsByKind: an accessor of another kind answers its zero
// value, and bytes that live in the string field never leak as a string.
func TestValueAccessorsByKind(t *testing.T) {
	b := Bytes([]byte("abc"))
	s := String("abc")
	if b.StringValue() != "" || s.BytesValue() != nil || b.Equal(s) {
		t.Fatalf("bytes and strings mix: %q %v %v", b.StringValue(), s.BytesValue(), b.Equal(s))
	}
	if string(b.BytesValue()) != "abc" || !b.Equal(Bytes([]byte("abc"))) || b.Equal(Bytes([]byte("abd"))) {
		t.Fatal("bytes value")
	}
	if Bytes(nil).BytesValue() != nil || !Bytes(nil).Equal(Bytes([]byte{})) {
		t.Fatal("empty bytes")
	}
	if String("").StringValue() != "" || !String("").Equal(String("")) || String("").Equal(Value{}) {
		t.Fatal("empty string")
	}
	m := StringMapValue(StringMapOf(map[string]string{"a": "1"}))
	if m.StringValue() != "" || m.BytesValue() != nil || s.StringMapValue().Len() != 0 || m.StringMapValue().Len() != 1 {
		t.Fatal("string map accessors")
	}
	if _, ok := b.IPValue(); ok {
		t.Fatal("3 bytes are no IP address")
	}
}

// TestHotAccessorsDoNotAllocate: Get, AppendKey and string-map Get are on
// the check-cache path.
func TestHotAccessorsDoNotAllocate(t *testing.T) {
	bag := requestBag()
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		v, _ := bag.Get(RequestHeaders)
		if _, ok := v.StringMapValue().Get(":path"); !ok {
			t.Fatal("no :path")
		}
		buf = buf[:0]
		for _, v := range bag.All() {
			buf = v.AppendKey(buf)
		}
		ip, _ := bag.Get(SourceIP)
		if _, ok := ip.IPValue(); !ok {
			t.Fatal("no ip")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations", allocs)
	}
}
