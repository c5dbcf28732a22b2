package weaktimer

import (
	"runtime"
	"testing"
	"time"
	"weak"
)

type target struct {
	fired chan struct{}
	pad   [64]byte // a distinct allocation, not a tiny-alloc block
}

func TestAfterFuncCallsWithTarget(t *testing.T) {
	p := &target{fired: make(chan struct{})}
	AfterFunc(p, time.Millisecond, func(p *target) { close(p.fired) })
	<-p.fired
}

func TestAfterFuncDoesNotKeepTargetAlive(t *testing.T) {
	fired := make(chan struct{}, 1)
	p := &target{fired: fired}
	AfterFunc(p, time.Hour, func(p *target) { p.fired <- struct{}{} })
	w := weak.Make(p)
	p = nil
	// The pending timer holds only a weak pointer: the target is
	// collected although the timer has not fired.
	for i := 0; w.Value() != nil; i++ {
		if i == 100 {
			t.Fatal("a pending timer kept its target alive")
		}
		runtime.GC()
	}
	select {
	case <-fired:
		t.Fatal("the timer fired for a collected target")
	default:
	}
}

func TestAfterFuncResetAndStop(t *testing.T) {
	p := &target{fired: make(chan struct{}, 2)}
	tm := AfterFunc(p, time.Hour, func(p *target) { p.fired <- struct{}{} })
	if !tm.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	tm.Reset(time.Millisecond)
	<-p.fired
	runtime.KeepAlive(p)
}
