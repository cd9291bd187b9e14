// Command seer is the ranking and prediction service: it serves predictions
// over HTTP (serve), loads features into the stores (upload), checks model
// versions before they ship (validate), writes a manifest for a model
// artifact (manifest), and estimates the feature cache's hit rate from a
// trace of reads (simulate).
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
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

const usage = `usage: seer <command> [flags] [arguments]

commands:
  serve     --config FILE                          serve predictions over HTTP (and gRPC)
  upload    --config FILE --entity NAME FILE|DIR... load feature files as a new generation
            --config FILE --status|--rollback F...|--gc  list, roll back or delete generations
  validate  [--catalog FILE | --config FILE] DIR   check a model version directory
  manifest  --catalog FILE [--name N --version V] ARTIFACT  print a manifest for a model artifact
  simulate  [--sizes N,...] (--zipf N,S | TRACE...) replay feature reads through caches of several sizes
  version                                          print the version and exit

Flags and arguments may come in any order; "seer <command> --help" says more.
Exit status: 0 on success, 1 on failure, 2 for a usage error.`

// commands describes each subcommand for its --help: what it does and its
// positional arguments.
var commands = map[string]struct{ synopsis, about, args string }{
	"serve": {"seer serve --config FILE [flags]",
		"Serve predictions over HTTP (and gRPC with grpc_listen) until SIGTERM or SIGINT.", ""},
	"upload": {"seer upload --config FILE (--entity NAME [flags] FILE|DIR... | --status [FEATURE...] | --rollback FEATURE... | --gc)",
		"Load feature files into a new generation of their features and switch to it once every row is written;\n" +
			"or list, roll back or delete generations. docs/upload.md says more.",
		"  FILE|DIR...  feature files of entity NAME: .csv, .jsonl or .json (JSON Lines), .parquet, or directories\n" +
			"               of part files; nothing is served unless every row of every file is good"},
	"validate": {"seer validate [--catalog FILE | --config FILE] DIR",
		"Load a model version as the registry would, and print a summary or every problem found.",
		"  DIR  a model version directory, <models>/<model>/<version>/, holding manifest.yaml and the artifact"},
	"manifest": {"seer manifest (--catalog FILE | --config FILE) [--name N] [--version V] ARTIFACT",
		"Print a manifest for a model artifact: its format from its bytes, one input per model column named as\n" +
			"the artifact names it, a catalog feature where the catalog has one of that name and a request input\n" +
			"(marked TODO) otherwise. Golden rows are left to you; save it as manifest.yaml beside the artifact.",
		"  ARTIFACT  a LightGBM, XGBoost, scikit-learn (seer's export) or ONNX model file"},
	"simulate": {"seer simulate [flags] (--zipf N,S | TRACE...)",
		"Replay feature reads through caches of several sizes and print the hit-rate curve.",
		"  TRACE...  trace files: JSON lines as the cache's trace writes them, or redis-cli MONITOR\n" +
			"            output; - reads standard input"},
}

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

// errUsage marks errors in how seer was called: exit status 2.
var errUsage = errors.New("usage")

// usageError is an error in how seer was called, with its own message.
type usageError struct{ msg string }

func (e usageError) Error() string        { return e.msg }
func (e usageError) Is(target error) bool { return target == errUsage }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// run is seer's whole program: main only adds signals and the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return usagef("no command")
	}
	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], stdout, stderr)
	case "upload":
		err = runUpload(ctx, args[1:], stdout, stderr)
	case "validate":
		err = runValidate(ctx, args[1:], stdout, stderr)
	case "manifest":
		err = runManifest(ctx, args[1:], stdout, stderr)
	case "simulate":
		err = runSimulate(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "version", "--version", "-version":
		printVersion(stdout)
		return nil
	default:
		return usagef("unknown command %q (seer --help lists them)", args[0])
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil // the help was printed
	}
	return err
}

// newFlags returns the flag set of a subcommand; its --help goes to
// stdout.
func newFlags(name string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses the flags of a subcommand wherever they are among its
// arguments (everything after "--" is an argument), leaving the arguments,
// in order, in fs.Args. -h or --help prints the subcommand's help and
// returns flag.ErrHelp; a bad flag is a usage error of one line.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			printHelp(out, fs)
			return flag.ErrHelp
		}
	}
	fs.SetOutput(io.Discard) // the flag package's own messages: the error says it
	defer fs.SetOutput(out)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return usagef("%s: %v (seer %s --help)", fs.Name(), err, fs.Name())
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		positional, args = append(positional, rest[0]), rest[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

// printHelp writes a subcommand's help: synopsis, what it does, its
// arguments and its flags.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	c := commands[fs.Name()]
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.synopsis, c.about)
	if c.args != "" {
		fmt.Fprintf(w, "\narguments:\n%s\n", c.args)
	}
	fmt.Fprintln(w, "\nflags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// oneLine folds a possibly multi-line error into one line.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}
