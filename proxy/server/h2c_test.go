package server

import (
	"net/http"
	"runtime"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

func h2cWrap(h http.Handler, s *http2.Server) http.Handler { return h2c.NewHandler(h, s) }

func runtimeGosched() { runtime.Gosched() }
