package accesslog

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func decodeConfigs(t testing.TB, src string) ([]Config, error) {
	t.Helper()
	var doc struct {
		AccessLog []Config `yaml:"access_log"`
	}
	err := yaml.Unmarshal([]byte(src), &doc)
	return doc.AccessLog, err
}

func TestConfigDecodeAndDefaults(t *testing.T) {
	cfgs, err := decodeConfigs(t, `
access_log:
- type: file
  filter: {status_code_filter: {comparison: {op: GE, value: 500}}}
  config:
    path: /tmp/x.log
    typed_json_format: {code: "%RESPONSE_CODE%", nested: {path: "%REQ(:PATH)%"}}
    omit_empty_values: true
- name: als
  type: grpc
  config:
    address: 127.0.0.1:9091
    log_name: remora
    additional_request_headers_to_log: [x-tenant]
    buffer_flush_interval: 250ms
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfgs) != 2 || cfgs[0].File == nil || cfgs[1].GRPC == nil {
		t.Fatalf("decoded %+v", cfgs)
	}
	for i := range cfgs {
		cfgs[i].ApplyDefaults()
		if err := cfgs[i].Validate("access_log"); err != nil {
			t.Errorf("config %d: %v", i, err)
		}
	}
	f := cfgs[0].File
	if cfgs[0].Name != "file:/tmp/x.log" || f.FlushInterval.D() != time.Second || f.BufferBytes != 1<<20 || f.FlushBytes != 64<<10 {
		t.Errorf("file defaults: name %q %+v", cfgs[0].Name, f)
	}
	if cfgs[0].Filter == nil || cfgs[0].Filter.StatusCode == nil {
		t.Error("filter not decoded")
	}
	g := cfgs[1].GRPC
	if cfgs[1].Name != "als" || g.BufferFlushInterval.D() != 250*time.Millisecond || g.BufferSizeBytes != 16384 ||
		g.MaxBufferBytes != 4<<20 || g.ReconnectBaseInterval.D() != 250*time.Millisecond || g.ReconnectMaxInterval.D() != 30*time.Second {
		t.Errorf("grpc defaults: %+v", g)
	}
	// Round trip through MarshalYAML.
	out, err := yaml.Marshal(map[string]any{"access_log": cfgs})
	if err != nil {
		t.Fatal(err)
	}
	again, err := decodeConfigs(t, string(out))
	if err != nil || len(again) != 2 || again[1].GRPC.LogName != "remora" || again[0].File.TypedJSONFormat == nil {
		t.Errorf("round trip: %v %+v\n%s", err, again, out)
	}
}

func TestConfigUnknownFields(t *testing.T) {
	for _, c := range []struct {
		name, src, want string
	}{
		{"top level", "access_log:\n- type: file\n  confg: {}\n", "confg: line 3: unknown field"},
		{"file config", "access_log:\n- type: file\n  config:\n    pth: /x\n", "config.pth: line 4: unknown field"},
		{"grpc config", "access_log:\n- type: grpc\n  config: {address: a, log_nam: x}\n", "config.log_nam: line 3: unknown field"},
		{"nested filter", "access_log:\n- type: file\n  filter:\n    and_filter:\n      filters:\n      - status_code_filter: {comparision: {}}\n", "filter.and_filter.filters[0].status_code_filter.comparision: line 6: unknown field"},
		{"bad duration", "access_log:\n- type: file\n  config: {path: /x, flush_interval: 5}\n", "units are required"},
		{"bad comparison value", "access_log:\n- type: file\n  filter: {status_code_filter: {comparison: {op: GE, value: -1}}}\n", "non-negative integer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeConfigs(t, c.src)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		src  string
		want []string
	}{
		{"no type", "access_log: [{}]", []string{"access_log[0].type: required (file or grpc)"}},
		{"unknown type", "access_log: [{type: syslog}]", []string{`access_log[0].type: unknown access log type "syslog"`}},
		{"file without config", "access_log: [{type: file}]", []string{"access_log[0].config.path: required"}},
		{"file problems", `access_log: [{type: file, config: {format: "%NOPE%", buffer_bytes: -1}}]`, []string{
			"access_log[0].config.path: required",
			"access_log[0].config.format: format: position 0: unknown operator %NOPE%",
			"access_log[0].config.buffer_bytes: must be positive",
		}},
		{"two formats", `access_log: [{type: file, config: {path: /x, format: "x", json_format: {a: b}}}]`, []string{"at most one of format, json_format and typed_json_format"}},
		{"bad json format", `access_log: [{type: file, config: {path: /x, typed_json_format: {a: {b: "%REQ()%"}}}}]`, []string{`access_log[0].config.typed_json_format: format: key "a.b": position 0`}},
		{"grpc problems", `access_log: [{type: grpc, config: {buffer_size_bytes: 100, max_buffer_bytes: 10, additional_request_headers_to_log: ["a b"]}}]`, []string{
			"access_log[0].config.address: required",
			"access_log[0].config.log_name: required",
			"access_log[0].config.max_buffer_bytes: 10 must be at least buffer_size_bytes (100)",
			`access_log[0].config.additional_request_headers_to_log[0]: invalid header name "a b"`,
		}},
		{"filter path", `access_log: [{type: file, config: {path: /x}, filter: {response_flag_filter: {flags: [BAD]}}}]`, []string{`access_log[0].filter.response_flag_filter.flags[0]`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfgs, err := decodeConfigs(t, c.src)
			if err != nil {
				t.Fatal(err)
			}
			cfgs[0].ApplyDefaults()
			err = cfgs[0].Validate("access_log[0]")
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if _, err := New(cfgs[0], Options{}); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

// FuzzConfig decodes arbitrary YAML as an access_log list: decoding,
// validation and filter compilation must never panic.
func FuzzConfig(f *testing.F) {
	f.Add("access_log: [{type: file, config: {path: /x, format: \"%REQ(:PATH)%\"}, filter: {not_health_check_filter: {}}}]")
	f.Add("access_log: [{type: grpc, config: {address: a, log_name: b}}]")
	f.Add("access_log: [{type: file, filter: {or_filter: {filters: [{header_filter: {header: {name: a, safe_regex_match: {regex: x}}}}, {runtime_filter: {percent_sampled: {numerator: 3}}}]}}}]")
	f.Add("access_log: [{type: file, config: {typed_json_format: {a: {b: 1}}}}]")
	f.Fuzz(func(t *testing.T, src string) {
		cfgs, err := decodeConfigs(t, src)
		if err != nil {
			return
		}
		for i := range cfgs {
			cfgs[i].ApplyDefaults()
			_ = cfgs[i].Validate("access_log")
			if cfgs[i].Filter != nil {
				if fl, err := NewFilter(cfgs[i].Filter); err == nil {
					fl.Match(fullStream())
				}
			}
		}
	})
}
