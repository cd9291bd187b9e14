package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// binary builds seer once per test into a temporary directory.
func binary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "seer")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is a seer serve running as its own process.
type process struct {
	cmd    *exec.Cmd
	addrs  map[string]string // http, grpc, admin -> host:port
	exited chan struct{}     // closed when the process exited, err set
	err    error
	stderr *lockedWriter
}

// start runs `seer serve` with the quickstart and the extra config, and
// waits until it listens.
func start(t *testing.T, bin, extraYAML string) *process {
	t.Helper()
	root, _ := filepath.Abs("../../configs/quickstart")
	cfg := writeConfig(t, "", root, "listen: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\n"+extraYAML)
	p := &process{cmd: exec.Command(bin, "serve", "--config", cfg), addrs: map[string]string{}, exited: make(chan struct{}),
		stderr: &lockedWriter{w: new(bytes.Buffer)}}
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		text := lines.Text()
		if u, ok := strings.CutPrefix(text, "seer: listening on "); ok {
			p.addrs["http"] = strings.TrimPrefix(u, "http://")
			break
		}
		if name, addr, ok := strings.Cut(strings.TrimPrefix(text, "seer: "), " listening on "); ok {
			p.addrs[name] = strings.TrimPrefix(addr, "http://")
		}
	}
	if p.addrs["http"] == "" {
		t.Fatalf("seer did not start; stderr:\n%s", p.stderr)
	}
	go io.Copy(io.Discard, out)
	return p
}

func (p *process) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// wait returns the exit code, failing the test if the process does not
// exit within d.
func (p *process) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		err := p.err
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(d):
		t.Fatalf("seer did not exit within %v; stderr:\n%s", d, p.stderr)
	}
	return -1
}

func readyz(url string) (int, bool, error) {
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	var body struct {
		Ready, Draining bool
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Draining, err
}

const quickPredict = `{"queries": [{"model": "store_ranker", "context": {"consumer": 1001}, "candidates": [{"entities": {"store": 1426727}}]}]}`

// TestBinary runs the real binary: its command line, and the shutdown
// sequence with real signals.
func TestBinary(t *testing.T) {
	bin := binary(t)
	t.Run("command line", func(t *testing.T) { testCommandLine(t, bin) })
	t.Run("shutdown sequence", func(t *testing.T) { testShutdownSequence(t, bin) })
	t.Run("second signal", func(t *testing.T) { testShutdownSecondSignal(t, bin) })
}

// testShutdownSequence sends SIGTERM while a request is in flight:
// /readyz answers 503 at once and gRPC health says NOT_SERVING, requests
// are still served for shutdown_delay, then the listeners (HTTP, gRPC,
// admin) close, and the request in flight is answered before seer exits 0.
func testShutdownSequence(t *testing.T, bin string) {
	const delay = 3 * time.Second
	p := start(t, bin, fmt.Sprintf("admin_listen: 127.0.0.1:0\nshutdown_delay: %s\nshutdown_timeout: 20s\n", delay))
	url := "http://" + p.addrs["http"]
	// The admin routes are on their own listener only.
	if code, _ := call(t, "GET", url+"/metrics", "", ""); code != http.StatusNotFound {
		t.Errorf("/metrics on the public listener: %d", code)
	}
	if code, _ := call(t, "GET", url+"/v1/admin/cache", testToken, ""); code != http.StatusNotFound {
		t.Errorf("/v1/admin/cache on the public listener: %d", code)
	}
	admin := "http://" + p.addrs["admin"]
	if code, body := call(t, "GET", admin+"/metrics", "", ""); code != 200 || !strings.Contains(body, "seer_http_requests_total") {
		t.Errorf("/metrics on the admin listener: %d", code)
	}
	if code, _ := call(t, "GET", admin+"/debug/pprof/heap", testToken, ""); code != 200 {
		t.Errorf("pprof on the admin listener: %d", code)
	}
	if code, draining, err := readyz(url); code != 200 || draining || err != nil {
		t.Fatalf("readyz before: %d %v %v", code, draining, err)
	}
	conn, err := grpc.NewClient(p.addrs["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	if resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before: %v %v", resp, err)
	}

	// A request in flight: headers and half of the body sent.
	slow, err := net.Dial("tcp", p.addrs["http"])
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	half := len(quickPredict) / 2
	fmt.Fprintf(slow, "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(quickPredict), quickPredict[:half])

	p.signal(t, syscall.SIGTERM)
	sent := time.Now()
	// /readyz says 503 at once (within a generous margin of the delay).
	deadline := time.Now().Add(delay / 2)
	for {
		code, draining, err := readyz(url)
		if code == http.StatusServiceUnavailable && draining {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz after SIGTERM: %d draining %v %v", code, draining, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "store_ranker"}); err != nil || resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health while draining: %v %v", resp, err)
	}
	// Requests are still served while the delay runs.
	if time.Since(sent) < delay {
		resp, err := http.Post(url+"/v1/predict", "application/json", strings.NewReader(quickPredict))
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("predict while draining: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
	}
	// After the delay the listeners close.
	time.Sleep(time.Until(sent.Add(delay + time.Second)))
	for name, addr := range p.addrs {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("the %s listener still accepts after shutdown_delay", name)
		}
	}
	// The request in flight completes, and seer exits 0.
	fmt.Fprint(slow, quickPredict[half:])
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := bufio.NewReader(slow).ReadString('\n')
	if err != nil || !strings.Contains(status, "200") {
		t.Errorf("the request in flight: %q %v", status, err)
	}
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Errorf("exit code %d; stderr:\n%s", code, p.stderr)
	}
}

// testShutdownSecondSignal: a second SIGTERM or SIGINT while draining
// ends seer at once, with a non-zero status.
func testShutdownSecondSignal(t *testing.T, bin string) {
	for _, second := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(second.String(), func(t *testing.T) {
			p := start(t, bin, "shutdown_delay: 60s\n")
			p.signal(t, syscall.SIGTERM)
			url := "http://" + p.addrs["http"]
			for {
				if code, _, _ := readyz(url); code == http.StatusServiceUnavailable {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			p.signal(t, second)
			if code := p.wait(t, 20*time.Second); code != 128+int(second) {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, 128+int(second), p.stderr)
			}
			if !strings.Contains(p.stderr.String(), "exiting without draining") {
				t.Errorf("stderr:\n%s", p.stderr)
			}
		})
	}
}
