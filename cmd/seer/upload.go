package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/retrieval"
	"github.com/seer-ml/seer/serving"
)

// runUpload loads feature files into a new generation of their features
// and switches them, or reports, rolls back or collects generations.
func runUpload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("upload", stdout)
	configPath := fs.String("config", "", "configuration file (YAML)")
	entity := fs.String("entity", "", "entity type the files describe")
	batch := fs.Int("batch", 0, "rows per pipelined batch (0: the default)")
	pipelines := fs.Int("pipelines", 0, "pipelines in flight per store (0: the default)")
	dryRun := fs.Bool("dry-run", false, "check the files and write nothing")
	inPlace := fs.Bool("in-place", false, "write into the current generations, not new ones (not atomic)")
	noGC := fs.Bool("no-gc", false, "do not delete older generations while uploading")
	progressMode := fs.String("progress", "auto", "progress line on stderr: auto (when a terminal), on or off")
	status := fs.Bool("status", false, "list each feature's current and previous generations")
	rollback := fs.Bool("rollback", false, "switch the named features back to their previous generations")
	gc := fs.Bool("gc", false, "delete generations no longer served")
	grace := fs.Duration("gc-grace", retrieval.DefaultGCGrace, "how long a generation no longer served is kept (0: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	modes := 0
	for _, b := range []bool{*status, *rollback, *gc} {
		if b {
			modes++
		}
	}
	switch {
	case *configPath == "":
		return usagef("upload needs --config FILE")
	case modes > 1:
		return usagef("upload: --status, --rollback and --gc go alone")
	case *rollback && fs.NArg() == 0:
		return usagef("upload: --rollback needs the features to roll back")
	case *gc && fs.NArg() > 0:
		return usagef("upload: --gc takes no arguments")
	case modes == 0 && (*entity == "" || fs.NArg() == 0):
		return usagef("upload needs --config FILE, --entity NAME and at least one file or directory")
	case modes > 0 && (*entity != "" || *dryRun || *inPlace):
		return usagef("upload: --entity, --dry-run and --in-place are for uploads")
	case *dryRun && *inPlace:
		return usagef("upload: --dry-run and --in-place exclude each other")
	case *grace < 0:
		return usagef("upload: --gc-grace %s is negative", *grace)
	}
	if *grace == 0 {
		// GCOptions takes a zero grace for the default; --gc-grace 0
		// means none.
		*grace = time.Nanosecond
	}
	switch *progressMode {
	case "auto", "on", "off":
	default:
		return usagef("upload: --progress %q (want auto, on or off)", *progressMode)
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	catalog, err := serving.LoadCatalog(cfg.path(cfg.Catalog), cfg.StoreNames())
	if err != nil {
		return err
	}
	if *entity != "" && catalog.Entity(*entity) == nil {
		return fmt.Errorf("upload: unknown entity %q", *entity)
	}
	var stores []*retrieval.Store
	defer func() {
		for _, st := range stores {
			st.Close()
		}
	}()
	for _, name := range cfg.StoreNames() {
		sc := cfg.Stores[name]
		if sc.Mode == "embedded" {
			continue // lives inside a running seer serve; seed it through the config
		}
		st, err := retrieval.Open(ctx, name, sc)
		if err != nil {
			return fmt.Errorf("store %s: %w", name, err)
		}
		stores = append(stores, st)
	}
	ret := retrieval.New(stores, retrieval.Options{})
	switch {
	case *status:
		return uploadStatus(ctx, stdout, catalog, stores, fs.Args())
	case *rollback:
		recs, err := ret.Rollback(ctx, catalog, fs.Args())
		for _, name := range fs.Args() {
			if fg, ok := recs[name]; ok {
				fmt.Fprintf(stdout, "%s: generation %d is current again (was %d)\n", name, fg.Current.Gen, fg.Previous.Gen)
			}
		}
		return err
	case *gc:
		st, err := ret.CollectGarbage(ctx, catalog, retrieval.GCOptions{Grace: *grace})
		fmt.Fprintf(stdout, "collected %d generations: %d fields deleted from %d keys scanned; %d dead uploads\n", st.Generations, st.Fields, st.Keys, st.Dead)
		for _, l := range st.Left {
			fmt.Fprintln(stdout, "left:", l)
		}
		return err
	}

	opt := retrieval.UploadOptions{
		BatchSize: *batch, Pipelines: *pipelines, DryRun: *dryRun, InPlace: *inPlace, SkipGC: *noGC,
		GC: retrieval.GCOptions{Grace: *grace},
	}
	var line *progressLine
	if *progressMode == "on" || (*progressMode == "auto" && isTerminal(stderr)) {
		line = &progressLine{w: stderr}
		opt.Progress = line.show
	}
	st, err := ret.Upload(ctx, catalog, *entity, fs.Args(), opt)
	line.clear()
	for _, f := range st.PerFile {
		fmt.Fprintf(stdout, "%s: %d rows, %d values\n", f.Path, f.Rows, f.Values)
	}
	if err != nil {
		return err
	}
	verb := "uploaded"
	if *dryRun {
		verb = "checked (dry run, nothing written)"
	}
	rate := float64(st.Values) / max(st.Elapsed.Seconds(), 1e-9)
	files := "files"
	if st.Files == 1 {
		files = "file"
	}
	fmt.Fprintf(stdout, "%s %d rows, %d values of %d features from %d %s in %s (%s values/s)",
		verb, st.Rows, st.Values, len(st.Features), st.Files, files, st.Elapsed.Round(time.Millisecond), si(rate))
	var gens []string
	for _, store := range slices.Sorted(maps.Keys(st.Generations)) {
		gens = append(gens, fmt.Sprintf("generation %d on store %s", st.Generations[store], store))
	}
	switch {
	case len(gens) > 0:
		fmt.Fprintf(stdout, "; switched to %s", strings.Join(gens, ", "))
	case *inPlace:
		fmt.Fprint(stdout, "; written in place")
	}
	fmt.Fprintln(stdout)
	if st.GC.Fields > 0 || st.GC.Dead > 0 {
		fmt.Fprintf(stdout, "deleted %d fields of older generations (%d keys scanned)\n", st.GC.Fields, st.GC.Keys)
	}
	if st.GCError != nil {
		fmt.Fprintf(stderr, "seer: collecting older generations stopped: %s\n", oneLine(st.GCError))
	}
	return nil
}

// uploadStatus prints every feature's generations, or the named ones'.
func uploadStatus(ctx context.Context, w io.Writer, c *features.Catalog, stores []*retrieval.Store, names []string) error {
	for _, n := range names {
		if c.Spec(n) == nil {
			return fmt.Errorf("upload --status: no feature %q in the catalog", n)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FEATURE\tSTORE\tCURRENT\tUPLOADED\tROWS\tPREVIOUS\tUPLOADED\tROWS")
	var errs []error
	var notes []string
	for _, st := range stores {
		state, err := st.Generations(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		if state == nil {
			continue
		}
		for _, s := range c.Specs {
			if s.Store != st.Name() || (len(names) > 0 && !slices.Contains(names, s.Name)) {
				continue
			}
			fg, ok := state.Features[s.ID]
			if !ok {
				fmt.Fprintf(tw, "%s\t%s\t0 (no generation)\t-\t-\t-\t-\t-\n", s.Name, st.Name())
				continue
			}
			prev, pt, pr := "-", "-", "-"
			if p := fg.Previous; p != nil {
				prev, pt, pr = fmt.Sprint(p.Gen), when(p.Time), rows(p.Rows)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Name, st.Name(), fg.Current.Gen, when(fg.Current.Time), rows(fg.Current.Rows), prev, pt, pr)
		}
		for g, u := range state.Uploads {
			notes = append(notes, fmt.Sprintf("store %s: generation %d being uploaded (%s) since %s, lease until %s", st.Name(), g, u.Source, when(u.Started), when(u.Lease)))
		}
		for g, gb := range state.Garbage {
			notes = append(notes, fmt.Sprintf("store %s: generation %d of %d features no longer served, to delete", st.Name(), g, len(gb.Features)))
		}
	}
	tw.Flush()
	slices.Sort(notes)
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return errors.Join(errs...)
}

func when(unix int64) string {
	if unix == 0 {
		return "-"
	}
	return time.Unix(unix, 0).UTC().Format(time.RFC3339)
}

func rows(n int64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

// si formats x with a k, M or G suffix.
func si(x float64) string {
	switch {
	case x >= 1e9:
		return fmt.Sprintf("%.2fG", x/1e9)
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// progressLine redraws one line on a terminal: rows, values/s, the share
// done and the time left.
type progressLine struct {
	w     io.Writer
	width int
}

func (p *progressLine) show(pr retrieval.UploadProgress) {
	rate := float64(pr.Values) / max(pr.Elapsed.Seconds(), 1e-9)
	s := fmt.Sprintf("%s rows, %s values/s", si(float64(pr.Rows)), si(rate))
	if pr.Total > 0 {
		frac := float64(pr.Done) / float64(pr.Total)
		s += fmt.Sprintf(", %.0f%%", 100*frac)
		if frac > 0.01 && frac < 1 {
			left := time.Duration(float64(pr.Elapsed) * (1 - frac) / frac)
			s += ", ETA " + left.Round(time.Second).String()
		}
	}
	pad := max(0, p.width-len(s))
	fmt.Fprintf(p.w, "\r%s%s", s, strings.Repeat(" ", pad))
	p.width = len(s)
}

// clear erases the line; nil does nothing.
func (p *progressLine) clear() {
	if p == nil || p.width == 0 {
		return
	}
	fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.width))
}
