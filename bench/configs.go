package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

// The peers' configurations. Every proxy gets the same number of worker
// threads or processes (workers, by default the machine's CPU count), keeps
// connections to the upstream alive and writes no per-request log, except
// remora-full whose access log is part of what is measured.

var upstreamConf = template.Must(template.New("upstream").Parse(`# the fixed upstream: nginx serving a static 1 KiB file
daemon off;
master_process on;
worker_processes 1;
{{if .Root}}user root;{{end}}
pid {{.Dir}}/upstream.pid;
error_log {{.Dir}}/upstream-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path {{.Dir}}/tmp;
    proxy_temp_path {{.Dir}}/tmp;
    fastcgi_temp_path {{.Dir}}/tmp;
    uwsgi_temp_path {{.Dir}}/tmp;
    scgi_temp_path {{.Dir}}/tmp;
    default_type application/octet-stream;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    etag off;
    server {
        listen {{.HTTP}};
        location / { root {{.Dir}}/www; }
    }
    server {
        listen {{.H2C}} http2;
        location / { root {{.Dir}}/www; }
    }
}
`))

var nginxConf = template.Must(template.New("nginx").Parse(`# nginx as a reverse proxy
daemon off;
master_process on;
worker_processes {{.Workers}};
{{if .Root}}user root;{{end}}
pid {{.Dir}}/nginx-proxy.pid;
error_log {{.Dir}}/nginx-proxy-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path {{.Dir}}/tmp;
    proxy_temp_path {{.Dir}}/tmp;
    fastcgi_temp_path {{.Dir}}/tmp;
    uwsgi_temp_path {{.Dir}}/tmp;
    scgi_temp_path {{.Dir}}/tmp;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    upstream up {
        server {{.Upstream}};
        keepalive 512;
        keepalive_requests 100000000;
    }
    server {
        listen {{.Listen}};
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`))

var haproxyConf = template.Must(template.New("haproxy").Parse(`# HAProxy as a reverse proxy
global
    nbthread {{.Workers}}
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend fe
    bind {{.Listen}}
    default_backend be
backend be
    server up {{.Upstream}}
`))

var caddyConf = template.Must(template.New("caddy").Parse(`# Caddy reverse_proxy
{
    admin off
    auto_https off
    persist_config off
    skip_install_trust
}
:{{.Port}} {
    bind {{.Host}}
    reverse_proxy {{.Upstream}}
}
`))

// remoraFullConf is the sidecar with everything on: the mixer check filter
// (whose decisions the check cache answers after the first request), the
// mixer report batcher and a file access log in Envoy's default format.
var remoraFullConf = template.Must(template.New("remora").Parse(`# remora proxy with mixer check (cached) + report + file access log
node: {id: bench, cluster: bench}
admin:
  address: {{.Admin}}
logging:
  level: warn
listeners:
- name: ingress
  address: {{.Listen}}
  direction: inbound
  filter_chains:
  - http_connection_manager:
      stat_prefix: ingress
      route_config:
        name: local
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes:
          - match: {prefix: /}
            route: {cluster: upstream}
      http_filters:
      - name: mixer
        config:
          server:
            address: {{.Mixer}}
            check:
              fail_policy: close
            report:
              max_batch_entries: 100
              max_batch_time: 1s
          identity:
            uid: kubernetes://upstream-v1.default
            namespace: default
            workload: upstream-v1
            labels: {app: upstream, version: v1}
            service_host: upstream.default.svc.cluster.local
            service_name: upstream
      - name: router
{{- if .AccessLog}}
      access_log:
      - type: file
        config:
          path: {{.AccessLog}}
{{- end}}
clusters:
- name: upstream
  type: STATIC
  protocol: use_downstream
  endpoints: [{address: {{.Upstream}}}]
`))

type confData struct {
	Dir, HTTP, H2C, Listen, Upstream, Admin, Mixer, AccessLog, Host, Port string
	Workers                                                               int
	Root                                                                  bool
}

// writeConf renders t into dir/name and returns the file's path and text.
func writeConf(t *template.Template, dir, name string, d confData) (string, string, error) {
	d.Dir = dir
	d.Root = os.Geteuid() == 0
	if d.Listen != "" {
		i := strings.LastIndexByte(d.Listen, ':')
		d.Host, d.Port = d.Listen[:i], d.Listen[i+1:]
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", "", fmt.Errorf("bench: config %s: %w", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return "", "", fmt.Errorf("bench: config %s: %w", name, err)
	}
	return path, b.String(), nil
}
