package attributes

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestBuilderMatchesModel runs random Set/Delete/Get/Merge sequences, with
// and without a base bag, against a map and checks Get, Len and Build.
func TestBuilderMatchesModel(t *testing.T) {
	names := make([]string, 50)
	for i := range names {
		names[i] = fmt.Sprintf("attr.%02d", (i*37)%50)
	}
	for _, tc := range []struct {
		name     string
		baseSize int
		ops      int
	}{
		{"empty builder, few ops", 0, 10},
		{"empty builder, many ops", 0, 400},
		{"base bag, few ops", 20, 10},
		{"base bag, more than the scratch", 30, 45},
		{"base bag, many ops", 40, 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(tc.ops)))
			for round := range 20 {
				model := map[string]Value{}
				base := NewBuilder(tc.baseSize)
				for i := range tc.baseSize {
					base.Set(names[r.IntN(len(names))], Int64(int64(i)))
				}
				baseBag := base.Build()
				for n, v := range baseBag.All() {
					model[n] = v
				}
				bd := NewBuilderFrom(baseBag, 4)
				for i := range tc.ops {
					n := names[r.IntN(len(names))]
					switch op := r.IntN(10); {
					case op < 6:
						v := String(fmt.Sprint(round, i))
						bd.Set(n, v)
						model[n] = v
					case op < 8:
						bd.Delete(n)
						delete(model, n)
					case op < 9:
						m := BagOf(map[string]Value{n: Int64(int64(i)), names[0]: Bool(true)})
						bd.Merge(m)
						for mn, mv := range m.All() {
							model[mn] = mv
						}
					default:
						got, ok := bd.Get(n)
						want, wok := model[n]
						if ok != wok || !got.Equal(want) {
							t.Fatalf("round %d op %d: Get(%q) = %v, %v; want %v, %v", round, i, n, got, ok, want, wok)
						}
					}
					if i%97 == 0 && bd.Len() != len(model) {
						t.Fatalf("round %d op %d: Len = %d, want %d", round, i, bd.Len(), len(model))
					}
				}
				if cap(bd.entries) > 2*len(names)+2*compactAfter+tc.baseSize+8 {
					t.Fatalf("the log grew to %d for %d names", cap(bd.entries), len(names))
				}
				if got, want := bd.Build(), BagOf(model); !got.Equal(want) {
					t.Fatalf("round %d: built\n%s\nwant\n%s", round, got, want)
				}
				if bd.Len() != 0 {
					t.Fatal("Build must leave the builder empty")
				}
			}
		})
	}
}

func TestBuilderLastSetWins(t *testing.T) {
	base := BagOf(map[string]Value{"a": Int64(1), "b": Int64(2), "c": Int64(3)})
	tests := []struct {
		name string
		do   func(*Builder)
		want map[string]Value
	}{
		{"set twice", func(bd *Builder) { bd.Set("a", Int64(10)); bd.Set("a", Int64(11)) },
			map[string]Value{"a": Int64(11), "b": Int64(2), "c": Int64(3)}},
		{"delete then set", func(bd *Builder) { bd.Delete("b"); bd.Set("b", String("x")) },
			map[string]Value{"a": Int64(1), "b": String("x"), "c": Int64(3)}},
		{"set then delete", func(bd *Builder) { bd.Set("d", Int64(4)); bd.Delete("d"); bd.Delete("a") },
			map[string]Value{"b": Int64(2), "c": Int64(3)}},
		{"zero value deletes", func(bd *Builder) { bd.Set("c", Value{}) },
			map[string]Value{"a": Int64(1), "b": Int64(2)}},
		{"delete all, add before and after", func(bd *Builder) {
			bd.Delete("a")
			bd.Delete("b")
			bd.Delete("c")
			bd.Set("0", Bool(true))
			bd.Set("z", Bool(false))
		}, map[string]Value{"0": Bool(true), "z": Bool(false)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bd := NewBuilderFrom(base, 0)
			tt.do(bd)
			if got := bd.Build(); !got.Equal(BagOf(tt.want)) {
				t.Fatalf("got\n%s", got)
			}
			if base.Len() != 3 {
				t.Fatal("the base bag changed")
			}
		})
	}
}

func BenchmarkBuilderFrom(b *testing.B) {
	base := requestBag()
	b.ReportAllocs()
	for b.Loop() {
		bd := NewBuilderFrom(base, 8)
		bd.Set(ResponseCode, Int64(200))
		bd.Set(RequestSize, Int64(10))
		bd.Set(ResponseSize, Int64(1000))
		bd.Set(ResponseDuration, Duration(1))
		bd.Set(RequestPath, String("/x"))
		bd.Build()
	}
}

func BenchmarkBuilderNew(b *testing.B) {
	bag := requestBag()
	b.ReportAllocs()
	for b.Loop() {
		bd := NewBuilder(32)
		for n, v := range bag.All() {
			bd.Set(n, v)
		}
		bd.Build()
	}
}

// TestBuilderReset checks that Reset starts from the base, copies the
// base's string maps into the builder's storage, and reuses the storage of
// the bag built before.
func TestBuilderReset(t *testing.T) {
	labels := StringMapOf(map[string]string{"app": "reviews", "version": "v2"})
	base := BagOf(map[string]Value{"a": Int64(1), "labels": StringMapValue(labels), "z": Bool(true)})
	tests := []struct {
		name string
		base Bag
		do   func(*Builder)
		want map[string]Value
	}{
		{"zero base", Bag{}, func(bd *Builder) { bd.Set("m", String("x")) }, map[string]Value{"m": String("x")}},
		{"base only", base, func(*Builder) {}, map[string]Value{"a": Int64(1), "labels": StringMapValue(labels), "z": Bool(true)}},
		{"set, replace, delete", base, func(bd *Builder) {
			bd.Set("b", Int64(2))
			bd.Set("a", Int64(3))
			bd.Delete("z")
			kvs := append(bd.KVs(1), KV{"k", "v"})
			bd.Set("h", StringMapValue(NewStringMap(kvs)))
		}, map[string]Value{"a": Int64(3), "b": Int64(2), "h": StringMapValue(StringMapOf(map[string]string{"k": "v"})), "labels": StringMapValue(labels)}},
	}
	var bd Builder // one builder through every case, as a pool would use it
	for round := range 3 {
		for _, tt := range tests {
			t.Run(fmt.Sprint(tt.name, "/", round), func(t *testing.T) {
				var last *entry
				if len(bd.spare) > 0 {
					last = &bd.spare[:1][0]
				}
				bd.Reset(tt.base)
				tt.do(&bd)
				got := bd.Build()
				if !got.Equal(BagOf(tt.want)) {
					t.Fatalf("built\n%s\nwant\n%s", got, BagOf(tt.want))
				}
				if v, ok := got.Get("labels"); ok && &v.StringMapValue().Entries()[0] == &labels.Entries()[0] {
					t.Fatal("the bag shares the base's string map storage")
				}
				// Once warm (after the first round, which sizes the
				// storage for the largest case), Reset reuses it.
				if round > 0 && last != nil && len(got.entries) > 0 && &got.entries[0] != last {
					t.Fatal("Reset did not reuse the storage of the last bag")
				}
				if !base.Equal(BagOf(map[string]Value{"a": Int64(1), "labels": StringMapValue(labels), "z": Bool(true)})) {
					t.Fatal("the base bag changed")
				}
			})
		}
	}
}

// BenchmarkBuilderReset is a pooled builder's cost: a request bag over a
// base, built in reused storage.
func BenchmarkBuilderReset(b *testing.B) {
	base := requestBag()
	var bd Builder
	b.ReportAllocs()
	for b.Loop() {
		bd.Reset(base)
		bd.Set(ResponseCode, Int64(200))
		bd.Set(ResponseSize, Int64(1024))
		kvs := append(bd.KVs(2), KV{":status", "200"}, KV{"content-type", "text/html"})
		bd.Set(ResponseHeaders, StringMapValue(NewStringMap(kvs)))
		if bd.Build().Len() == 0 {
			b.Fatal("empty bag")
		}
	}
}
