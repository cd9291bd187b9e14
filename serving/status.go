package serving

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/guardrail"
	"github.com/seer-ml/seer/registry"
	"github.com/seer-ml/seer/retrieval"
)

// StoreStatus is a store's health as readiness reports it.
type StoreStatus struct {
	Mode     string                 `json:"mode"`
	Status   string                 `json:"status"`
	Required bool                   `json:"required"`
	Nodes    []retrieval.NodeHealth `json:"nodes"`
	// HashEncoding is the store's hash-max-listpack-entries and the entity
	// types whose hashes outgrow it, as read at start (informational).
	HashEncoding *retrieval.HashEncoding `json:"hash_encoding,omitempty"`
	// GenerationsMissing says the store's generations hash is gone (its
	// node restarted empty) and reads keep the generations read before,
	// until an upload writes it again.
	GenerationsMissing bool `json:"generations_missing,omitempty"`
}

// Readiness says whether the server should get traffic, and why.
type Readiness struct {
	Ready bool `json:"ready"`
	// Draining is set once the server is shutting down.
	Draining bool                   `json:"draining,omitempty"`
	Models   int                    `json:"models"`
	Stores   map[string]StoreStatus `json:"stores"`
	// FeatureAlerts names the features whose default rate is at or over
	// their guardrail; with guardrails.fail_readiness, they make the pod
	// unready.
	FeatureAlerts []string `json:"feature_alerts,omitempty"`
}

// Ready reports each store's health (ok, degraded, down or breaker_open,
// and each node's) within a second, and is ready unless a store whose
// config says required is not ok, or a feature's guardrail alerts and
// guardrails.fail_readiness is set. Other stores may be degraded or down:
// their features take defaults, and the pod still serves. Once Drain was
// called it answers not ready at once, without asking the stores.
func (s *Server) Ready(ctx context.Context) Readiness {
	if s.draining.Load() {
		return Readiness{Draining: true, Models: len(s.registry.Snapshot().Models()), Stores: map[string]StoreStatus{}}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	body := Readiness{Ready: true, Models: len(s.registry.Snapshot().Models()), Stores: make(map[string]StoreStatus)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, st := range s.stores {
		wg.Go(func() {
			h := st.Health(ctx)
			mu.Lock()
			defer mu.Unlock()
			if st.Required() && h.Status != retrieval.StatusOK {
				body.Ready = false
			}
			body.Stores[st.Name()] = StoreStatus{Mode: st.Mode(), Status: h.Status, Required: st.Required(), Nodes: h.Nodes, HashEncoding: s.hashEnc[st.Name()],
				GenerationsMissing: h.GenerationsMissing}
		})
	}
	wg.Wait()
	body.FeatureAlerts = s.learn.guard.Alerts()
	if s.learn.guard.Unready() {
		body.Ready = false
	}
	return body
}

// InputInfo describes one input of a model version.
type InputInfo struct {
	Name         string         `json:"name"`
	Source       string         `json:"source"`
	Type         string         `json:"type"`
	Entity       string         `json:"entity,omitempty"`
	Store        string         `json:"store,omitempty"`
	Default      features.Value `json:"default"`
	Categories   []string       `json:"categories,omitempty"`
	Transform    string         `json:"transform,omitempty"`
	DefaultsUsed uint64         `json:"defaults_used"`
}

// VersionInfo describes one loaded version of a model.
type VersionInfo struct {
	Version  string      `json:"version"`
	Format   string      `json:"format"`
	Output   string      `json:"output"`
	Outputs  int         `json:"outputs"`
	LoadedAt time.Time   `json:"loaded_at"`
	Inputs   []InputInfo `json:"inputs"`
}

// ModelInfo describes a model: its versions, default and aliases.
type ModelInfo struct {
	Name     string            `json:"name"`
	Default  string            `json:"default"`
	Aliases  map[string]string `json:"aliases,omitempty"`
	Versions []VersionInfo     `json:"versions"`
	// Shadows are the versions (name@version) that shadow the model's
	// queries, from its shadows.yaml.
	Shadows []string `json:"shadows,omitempty"`
}

// ModelList is what the registry holds: the loaded models and the versions
// that failed to load.
type ModelList struct {
	Models   []ModelInfo        `json:"models"`
	Failures []registry.Failure `json:"failures"`
}

// Models lists the current snapshot's models and failures.
func (s *Server) Models() ModelList {
	snap := s.registry.Snapshot()
	body := ModelList{Models: []ModelInfo{}, Failures: make([]registry.Failure, 0, len(snap.Failures()))}
	for _, f := range snap.Failures() {
		f.Dir = s.relative(f.Dir)
		f.Error = slices.Clone(f.Error)
		for i, line := range f.Error {
			f.Error[i] = s.relative(line)
		}
		body.Failures = append(body.Failures, f)
	}
	for _, m := range snap.Models() {
		mi := ModelInfo{Name: m.Name, Aliases: m.Aliases}
		for _, sv := range m.Shadows {
			mi.Shadows = append(mi.Shadows, label(sv))
		}
		if m.Default != nil {
			mi.Default = m.Default.Version
		}
		for _, v := range m.Versions {
			vi := VersionInfo{
				Version: v.Version, Format: v.Manifest.Format, Output: v.Manifest.Output,
				Outputs: v.Model.NumOutputs(), LoadedAt: v.LoadedAt,
			}
			for k, decl := range v.Manifest.Inputs {
				in := v.Plan.Inputs[k]
				ii := InputInfo{
					Name: in.Name, Source: features.SourceRequest, Type: in.Type.String(), Default: in.Default,
					Categories: decl.Categories, Transform: decl.Transform, DefaultsUsed: in.DefaultsUsed(),
				}
				if in.Spec != nil {
					ii.Source, ii.Entity, ii.Store = features.SourceCatalog, in.Spec.Entity.Name, in.Spec.Store
				}
				vi.Inputs = append(vi.Inputs, ii)
			}
			mi.Versions = append(mi.Versions, vi)
		}
		body.Models = append(body.Models, mi)
	}
	return body
}

// relative rewrites the paths under the models root that text holds as
// paths relative to the root, so that answers do not show where the
// server's files are.
func (s *Server) relative(text string) string {
	root := filepath.Clean(s.cfg.Models)
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	for _, r := range []string{abs, root} {
		if text == r {
			return "."
		}
		text = strings.ReplaceAll(text, r+string(filepath.Separator), "")
	}
	return text
}

// FeatureStats counts, for one catalog feature, the values that took its
// default and why.
type FeatureStats struct {
	Entity    string `json:"entity"`
	Store     string `json:"store"`
	Type      string `json:"type"`
	Field     string `json:"field"`
	Defaults  uint64 `json:"defaults_used"`
	Corrupt   uint64 `json:"corrupt"`
	WrongType uint64 `json:"wrong_type"`
	Stale     uint64 `json:"stale"`
	// The guardrail: the share of the window's rows that took the default
	// (null without rows), those rows, the threshold (null when off), and
	// whether the rate is at or over it.
	guardrail.Status
}

// FeatureStats reports, per catalog feature, how often its values were
// missing, corrupt, of the wrong type or stale, and its guardrail.
func (s *Server) FeatureStats() map[string]FeatureStats {
	guards := s.learn.guard.Statuses()
	out := make(map[string]FeatureStats, len(s.catalog.Specs))
	for _, sp := range s.catalog.Specs {
		st := sp.Stats()
		out[sp.Name] = FeatureStats{
			Entity: sp.Entity.Name, Store: sp.Store, Type: sp.Type.String(), Field: sp.Field,
			Defaults: st.Defaults.Load(), Corrupt: st.Corrupt.Load(), WrongType: st.WrongType.Load(), Stale: st.Stale.Load(),
			Status: guards[sp.Name],
		}
	}
	return out
}
