// Package featurelog writes the feature log: a sample of the queries seer
// scored, one JSON line each, with every row's entities, the exact input
// values its model saw, where each came from, and its scores, so that a
// training job learns from what served. docs/api.md documents the format.
//
// The request path only copies a sampled query into a queue, which is
// bounded in queries and in bytes and never blocks: what does not fit is
// dropped and counted. One goroutine encodes and writes, rotating the file
// past a size.
//
// It imports features only; it must not import models, registry,
// retrieval, serving or cmd.
package featurelog

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/sample"
)

// Config is the feature_log section of the configuration. Without a Path
// nothing is logged.
type Config struct {
	// Path is the log file, relative to the config file, or "-" for the
	// process's standard output. Its directory is created when missing.
	Path string `yaml:"path"`
	// Sample is the share of queries logged, 0 to 1; a logged query is
	// logged with all its candidates.
	Sample float64 `yaml:"sample"`
	// MaxBytes rotates the file before a line would take it past this
	// size; a single longer line gets a file of its own.
	MaxBytes int64 `yaml:"max_bytes"`
	// Keep is how many rotated files are kept: PATH.1 (the newest) to
	// PATH.Keep.
	Keep int `yaml:"keep"`
	// Queue is how many queries may wait to be written; beyond it they
	// are dropped and counted.
	Queue int `yaml:"queue"`
	// QueueBytes bounds the memory the waiting queries hold; beyond it
	// they are dropped and counted.
	QueueBytes int64 `yaml:"queue_bytes"`
}

// DefaultConfig returns the configuration a file starts from: off, and
// when a path is set, every query logged.
func DefaultConfig() Config {
	return Config{Sample: 1, MaxBytes: 100 << 20, Keep: 5, Queue: 4096, QueueBytes: 64 << 20}
}

// ErrConfig is wrapped by every error that rejects a configuration.
var ErrConfig = errors.New("bad feature_log config")

// Check reports what is wrong with the configuration, in an error wrapping
// ErrConfig.
func (c Config) Check() error {
	var errs []error
	if !(c.Sample >= 0 && c.Sample <= 1) {
		errs = append(errs, fmt.Errorf("%w: sample: %v is not between 0 and 1", ErrConfig, c.Sample))
	}
	if c.MaxBytes <= 0 {
		errs = append(errs, fmt.Errorf("%w: max_bytes: must be positive", ErrConfig))
	}
	if c.Keep < 0 {
		errs = append(errs, fmt.Errorf("%w: keep: negative", ErrConfig))
	}
	if c.Queue <= 0 || c.QueueBytes <= 0 {
		errs = append(errs, fmt.Errorf("%w: queue and queue_bytes must be positive", ErrConfig))
	}
	return errors.Join(errs...)
}

// Query is one scored query as the request path hands it to Log. Log
// copies what it keeps: the caller may reuse every slice and map once Log
// returns.
type Query struct {
	Time      time.Time
	RequestID string
	QueryID   string
	Model     string
	Version   string
	Plan      *features.Plan  // the version's plan: its inputs name the columns
	Query     *features.Query // the entities of each row
	Cells     []features.Cell // rows × len(Plan.Inputs): each value the model saw and its origin
	Scores    []float64       // rows × Outputs
	Outputs   int
	Degraded  []string // stores that failed or timed out
}

// Logger writes sampled queries to the feature log. Its methods are safe
// for concurrent use.
type Logger struct {
	cfg    Config
	sample sample.Rate // SetSample changes it
	out    *output
	log    *slog.Logger

	ch      chan *entry
	queued  atomic.Int64 // bytes held by entries in ch
	entries sync.Pool
	closed  atomic.Bool
	stop    chan struct{}
	done    chan struct{}
	failing bool // the last write failed; owned by loop

	queries   *prometheus.CounterVec
	written   prometheus.Counter
	dropped   prometheus.Counter
	failed    prometheus.Counter
	errors    prometheus.Counter
	rotations prometheus.Counter
}

// Open starts a Logger for cfg, whose Path is already resolved: "-"
// writes to stdout. It creates the file's directory and opens the file,
// so that a path it cannot write fails at start. The metrics go to reg
// when it is not nil.
func Open(cfg Config, stdout io.Writer, log *slog.Logger, reg prometheus.Registerer) (*Logger, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: path: missing", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Logger{
		cfg: cfg, log: log,
		ch:   make(chan *entry, cfg.Queue),
		stop: make(chan struct{}), done: make(chan struct{}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_feature_log_queries_total",
			Help: "Queries sampled for the feature log, by result: written, dropped (the queue was full), failed (the write failed).",
		}, []string{"result"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seer_feature_log_write_errors_total",
			Help: "Failed writes, flushes, opens and rotations of the feature log.",
		}),
		rotations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seer_feature_log_rotations_total",
			Help: "Rotations of the feature log file.",
		}),
	}
	l.written = l.queries.WithLabelValues("written")
	l.dropped = l.queries.WithLabelValues("dropped")
	l.failed = l.queries.WithLabelValues("failed")
	l.sample.Set(cfg.Sample)
	if cfg.Path == "-" {
		l.out = newOutput("", 0, 0, stdout)
	} else {
		l.out = newOutput(cfg.Path, cfg.MaxBytes, cfg.Keep, nil)
		if err := l.out.open(); err != nil {
			return nil, fmt.Errorf("feature log: %w", err)
		}
	}
	if reg != nil {
		reg.MustRegister(l.queries, l.errors, l.rotations)
	}
	l.entries.New = func() any { return new(entry) }
	go l.loop()
	return l, nil
}

// Sampled decides whether the next query is logged. It is cheap enough to
// call for every query.
func (l *Logger) Sampled() bool {
	if l == nil {
		return false
	}
	return l.sample.Draw()
}

// Config returns the configuration the Logger was opened with (Sample as
// it was then).
func (l *Logger) Config() Config { return l.cfg }

// SetSample changes the share of queries logged, from the next query on
// (SIGHUP applies a changed feature_log.sample through it).
func (l *Logger) SetSample(sample float64) error {
	if !(sample >= 0 && sample <= 1) {
		return fmt.Errorf("%w: sample: %v is not between 0 and 1", ErrConfig, sample)
	}
	l.sample.Set(sample)
	return nil
}

// Log copies q into the queue and returns at once; when the queue is full
// in queries or bytes, or the Logger is closed, q is dropped and counted.
func (l *Logger) Log(q *Query) {
	if l.closed.Load() {
		l.dropped.Inc()
		return
	}
	if len(l.ch) == cap(l.ch) || l.queued.Load()+estimate(q) > l.cfg.QueueBytes {
		l.dropped.Inc()
		return
	}
	e := l.entries.Get().(*entry)
	e.fill(q)
	if l.queued.Add(e.size) > l.cfg.QueueBytes {
		l.queued.Add(-e.size)
		l.release(e)
		l.dropped.Inc()
		return
	}
	select {
	case l.ch <- e:
	default:
		l.queued.Add(-e.size)
		l.release(e)
		l.dropped.Inc()
	}
}

// Close stops accepting queries, writes those already queued and closes
// the file.
func (l *Logger) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	close(l.stop)
	<-l.done
	return l.out.close()
}

// loop writes queued entries until Close, flushing whenever the queue is
// empty, so that lines reach the file soon after their query.
func (l *Logger) loop() {
	defer close(l.done)
	var buf []byte
	keys := make(map[*features.Plan]planKeys) // plans are immutable
	write := func(e *entry) {
		k, ok := keys[e.plan]
		if !ok {
			if len(keys) >= maxPlans {
				clear(keys) // versions come and go: forget the old ones
			}
			k = newPlanKeys(e.plan)
			keys[e.plan] = k
		}
		buf = e.appendJSON(buf[:0], k)
		buf = append(buf, '\n')
		l.queued.Add(-e.size)
		l.release(e)
		l.account(l.out.writeLine(buf))
		if cap(buf) > maxKeptLine {
			buf = nil
		}
	}
	for {
		select {
		case e := <-l.ch:
			write(e)
			if len(l.ch) == 0 {
				l.account(l.out.flush())
			}
		case <-l.stop:
			for {
				select {
				case e := <-l.ch:
					write(e)
				default:
					l.account(l.out.flush())
					return
				}
			}
		}
	}
}

// account counts what a write or flush reported.
func (l *Logger) account(r result) {
	if r.written > 0 {
		l.written.Add(float64(r.written))
	}
	if r.failed > 0 {
		l.failed.Add(float64(r.failed))
	}
	if r.rotated {
		l.rotations.Inc()
	}
	switch {
	case r.err != nil:
		l.errors.Inc()
		if !l.failing {
			l.failing = true
			l.log.Error("write feature log", "path", l.cfg.Path, "err", r.err)
		}
	case l.failing && r.written > 0:
		l.failing = false
		l.log.Info("feature log writes again", "path", l.cfg.Path)
	}
}

// Limits on the memory kept between queries.
const (
	maxKeptLine  = 1 << 20
	maxKeptCells = 16 << 10
	maxPlans     = 256 // plans whose quoted input names are kept
)

func (l *Logger) release(e *entry) {
	if cap(e.cells) > maxKeptCells {
		return
	}
	e.reset()
	l.entries.Put(e)
}
