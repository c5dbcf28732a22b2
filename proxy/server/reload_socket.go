package server

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// socket is a listening socket that outlives configuration generations:
// one goroutine accepts on it and hands each connection to whichever
// generation's listener is attached through a view. A reload attaches the
// new generation's view before it closes the old one, so the socket never
// stops listening and no connect is refused while the configuration
// changes.
type socket struct {
	ln    net.Listener
	conns chan net.Conn // unbuffered: a connection waits in the kernel backlog, not here
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	log   *zap.Logger
}

// listenSocket binds addr and starts accepting.
func listenSocket(name, addr string, log *zap.Logger) (*socket, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("server: listener %q: %w", name, err)
	}
	s := &socket{ln: ln, conns: make(chan net.Conn), stop: make(chan struct{}), done: make(chan struct{}),
		log: log.With(zap.String("listener", name))}
	go s.accept()
	return s, nil
}

func (s *socket) accept() {
	defer close(s.done)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Warn("accept failed", zap.Error(err))
			select {
			case <-time.After(10 * time.Millisecond): // back off on EMFILE and the like
			case <-s.stop:
				return
			}
			continue
		}
		select {
		case s.conns <- c:
		case <-s.stop:
			c.Close()
			return
		}
	}
}

// close stops listening (new connects are refused) and waits for the
// accepting goroutine. Views return net.ErrClosed from then on.
func (s *socket) close() {
	s.once.Do(func() {
		close(s.stop)
		s.ln.Close()
		<-s.done
	})
}

// view returns a net.Listener fed by the socket until the view or the
// socket is closed; closing the view leaves the socket open.
func (s *socket) view() *socketView {
	return &socketView{s: s, closed: make(chan struct{})}
}

// socketView is one generation's net.Listener on a socket.
type socketView struct {
	s      *socket
	once   sync.Once
	closed chan struct{}
}

var _ net.Listener = (*socketView)(nil)

// Accept returns the next connection the socket accepted.
func (v *socketView) Accept() (net.Conn, error) {
	select {
	case <-v.closed:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-v.s.conns:
		return c, nil
	case <-v.closed:
		return nil, net.ErrClosed
	case <-v.s.stop:
		return nil, net.ErrClosed
	}
}

// Close detaches the view; the socket keeps listening.
func (v *socketView) Close() error {
	v.once.Do(func() { close(v.closed) })
	return nil
}

// Addr is the socket's bound address.
func (v *socketView) Addr() net.Addr { return v.s.ln.Addr() }
