// Command seer is the ranking and prediction service: it serves predictions
// over HTTP (serve), loads features into the stores (upload), checks model
// versions before they ship (validate), and estimates the feature cache's
// hit rate from a trace of reads (simulate).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

func main() {
	go exitOnSecondSignal()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// go-redis reports dial failures through a process-wide logger: send
	// them to the same JSON log as everything else.
	redis.SetLogger(redisLogger{slog.New(slog.NewJSONHandler(os.Stderr, nil))})
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "seer: "+oneLine(err))
		os.Exit(1)
	}
}

const usage = `usage: seer <command> [flags]

commands:
  serve     --config FILE [--listen ADDR]      serve predictions over HTTP
  upload    --config FILE --entity NAME FILE...  validate and load feature files
  validate  [--catalog FILE | --config FILE] DIR  check a model version directory
  simulate  [--sizes N,...] (--zipf N,S | TRACE...)  replay feature reads through caches of several sizes`

// exitOnSecondSignal ends the process at once on a second SIGINT or
// SIGTERM, while the first one drains: status 128 + the signal's number,
// as a shell reports a process the signal killed.
func exitOnSecondSignal() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	<-sigs
	sig := <-sigs
	fmt.Fprintf(os.Stderr, "seer: second %v: exiting without draining\n", sig)
	os.Exit(128 + int(sig.(syscall.Signal)))
}

// redisLogger passes go-redis's messages to slog as warnings.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "msg_detail", fmt.Sprintf(format, v...))
}

// errUsage marks errors in how seer was called.
var errUsage = errors.New("usage")

// run is seer's whole program: main only adds signals and the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("%w: no command", errUsage)
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "upload":
		return runUpload(ctx, args[1:], stdout, stderr)
	case "validate":
		return runValidate(ctx, args[1:], stdout, stderr)
	case "simulate":
		return runSimulate(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "version", "--version", "-version":
		printVersion(stdout)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("seer "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// oneLine folds a possibly multi-line error into one line.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}
