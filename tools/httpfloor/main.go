// Command httpfloor is the floor of an HTTP feature server on net/http: a
// server that reads each POST body and answers it with a constant JSON
// body, through the same net/http server seer uses, with nothing between
// the request and the answer. The CPU it spends per request, measured with
// tools/floorload -floor=false against its -pid, is what any handler on
// net/http spends before it reads a feature: seer's /v1/features cannot go
// below it. tools/bench_features.sh drives it beside seer with HTTPFLOOR=1;
// docs/performance.md ("/v1/features") has the figures.
//
//	httpfloor -listen 127.0.0.1:8090 -answer answer.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "httpfloor:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("httpfloor", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	answerPath := fs.String("answer", "", "the body of every answer (JSON); without it, {}")
	if err := fs.Parse(args); err != nil {
		return err
	}
	answer := []byte("{}\n")
	if *answerPath != "" {
		b, err := os.ReadFile(*answerPath)
		if err != nil {
			return err
		}
		answer = b
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	length := strconv.Itoa(len(answer))
	// The timeouts are seer's (cmd/seer/serve.go): each costs the
	// connection a deadline per request.
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", length)
		w.Write(answer)
	})}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
