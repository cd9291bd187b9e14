package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// build is what the binary knows of its own build.
type build struct {
	version, revision, goVersion string
}

// buildInfo reads the module version and VCS revision Go stamped into the
// binary; "unknown" where it stamped none.
func buildInfo() build {
	b := build{version: "unknown", revision: "unknown", goVersion: "unknown"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.goVersion = info.GoVersion
	if v := info.Main.Version; v != "" {
		b.version = v
	}
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && b.revision != "unknown" {
		b.revision += "-dirty"
	}
	return b
}

func printVersion(w io.Writer) {
	b := buildInfo()
	fmt.Fprintf(w, "seer %s (revision %s, %s)\n", b.version, b.revision, b.goVersion)
}

// registerBuildInfo exports seer_build_info{version, revision, goversion} 1.
func registerBuildInfo(reg prometheus.Registerer) {
	b := buildInfo()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "seer_build_info",
		Help: "Always 1: the version, VCS revision and Go version of the running binary.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(b.version, b.revision, b.goVersion).Set(1)
	reg.MustRegister(g)
}
