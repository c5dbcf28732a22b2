package capture_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/internal/capture"
	"github.com/remora-mesh/remora/proxy/config"
)

// TestWorkloadManifestCapture checks that docs/deploy/workload.yaml's
// init container and sidecar agree: the `remora iptables` flags parse, the
// sidecar runs as an excluded uid, and the sidecar's configuration has a
// use_original_dst listener on --proxy-port and an original_dst listener
// on --inbound-capture-port.
func TestWorkloadManifestCapture(t *testing.T) {
	data, err := os.ReadFile("../../docs/deploy/workload.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type container struct {
		Name            string   `yaml:"name"`
		Args            []string `yaml:"args"`
		SecurityContext struct {
			RunAsUser    *int64 `yaml:"runAsUser"`
			Capabilities struct {
				Add []string `yaml:"add"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
	}
	var proxyYAML string
	var init, sidecar *container
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
			Spec struct {
				Template struct {
					Spec struct {
						InitContainers []container `yaml:"initContainers"`
						Containers     []container `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch doc.Kind {
		case "ConfigMap":
			proxyYAML = doc.Data["proxy.yaml"]
		case "Deployment":
			for i, c := range doc.Spec.Template.Spec.InitContainers {
				if len(c.Args) > 0 && c.Args[0] == "iptables" {
					init = &doc.Spec.Template.Spec.InitContainers[i]
				}
			}
			for i, c := range doc.Spec.Template.Spec.Containers {
				if len(c.Args) > 0 && c.Args[0] == "proxy" {
					sidecar = &doc.Spec.Template.Spec.Containers[i]
				}
			}
		}
	}
	if init == nil || sidecar == nil || proxyYAML == "" {
		t.Fatal("workload.yaml lacks the iptables init container, the proxy container or the proxy's ConfigMap")
	}
	if u := init.SecurityContext.RunAsUser; u == nil || *u != 0 {
		t.Error("the init container must run as root (runAsUser: 0)")
	}
	for _, capName := range []string{"NET_ADMIN", "NET_RAW"} {
		if !slices.Contains(init.SecurityContext.Capabilities.Add, capName) {
			t.Errorf("the init container lacks capability %s", capName)
		}
	}
	f := capture.DefaultFlags()
	args := init.Args[1:]
	for i := 0; i+1 < len(args); i += 2 {
		v := args[i+1]
		switch args[i] {
		case "--proxy-uid":
			f.ProxyUID = v
		case "--proxy-gid":
			f.ProxyGID = v
		case "--proxy-port":
			f.ProxyPort = v
		case "--inbound-capture-port":
			f.InboundCapturePort = v
		case "--exclude-inbound-ports":
			f.ExcludeInboundPorts = v
		default:
			t.Fatalf("flag %s: extend this test", args[i])
		}
	}
	cfg, err := capture.ParseFlags(f)
	if err != nil {
		t.Fatal(err)
	}
	if u := sidecar.SecurityContext.RunAsUser; u == nil || !slices.Contains(cfg.ProxyUIDs, uint32(*u)) {
		t.Errorf("the sidecar's runAsUser is not one of --proxy-uid %v: its connections would be captured", cfg.ProxyUIDs)
	}
	pc, err := config.Parse([]byte(proxyYAML))
	if err != nil {
		t.Fatal(err)
	}
	port := func(l config.Listener) string { return l.Address[strings.LastIndex(l.Address, ":")+1:] }
	var outbound, inbound bool
	for _, l := range pc.Listeners {
		switch {
		case port(l) == f.ProxyPort && l.UseOriginalDst:
			outbound = true
		case port(l) == f.InboundCapturePort && (l.UseOriginalDst || l.HasListenerFilter(config.ListenerFilterOriginalDst)):
			inbound = true
		}
	}
	if !outbound || !inbound {
		t.Fatalf("the sidecar needs a use_original_dst listener on %s (found: %v) and an original_dst listener on %s (found: %v)",
			f.ProxyPort, outbound, f.InboundCapturePort, inbound)
	}
}
