package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ShadowFile is the name of a model's shadow list, beside its version
// directories: the models that shadow every query to it, each a reference
// (name, name@version or name@alias).
//
//	shadows:
//	  - store_ranker@canary
//	  - store_ranker_nn
const ShadowFile = "shadows.yaml"

// Caps on a shadow list: its bytes, and its shadows (each scores every
// query of the model again).
const (
	maxShadowFileSize = 64 << 10
	maxShadows        = 16
)

// Model returns the model called name, or nil.
func (s *Snapshot) Model(name string) *Model { return s.models[name] }

// readShadows reads a model's shadow list, as defensively as a version's
// files; a missing file lists none.
func readShadows(fr *fileReader, path string) ([]string, error) {
	data, err := fr.read(path, maxShadowFileSize, 0, nil)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseShadows(data)
}

// parseShadows parses a shadow list.
func parseShadows(data []byte) ([]string, error) {
	var file struct {
		Shadows []string `yaml:"shadows"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", ShadowFile, err)
	}
	if len(file.Shadows) > maxShadows {
		return nil, fmt.Errorf("%s: %d shadows, at most %d", ShadowFile, len(file.Shadows), maxShadows)
	}
	for i, ref := range file.Shadows {
		name, ver, pinned := strings.Cut(ref, "@")
		if name == "" || (pinned && ver == "") || strings.Contains(ver, "@") {
			return nil, fmt.Errorf("%s: shadows[%d]: %q is not a model reference (name, name@version or name@alias)", ShadowFile, i, ref)
		}
	}
	return file.Shadows, nil
}

// resolveShadows reads every model's shadow list and resolves it in next,
// the snapshot being made. A list that fails to read is an error when
// strict (at start), and otherwise a failure that keeps the list the model
// had in prev. A reference that does not resolve, which a later poll may
// fix, is a failure and is left out.
func (r *Registry) resolveShadows(fr *fileReader, next, prev *Snapshot, strict bool) error {
	for _, m := range next.models {
		path := filepath.Join(r.opt.Root, m.Name, ShadowFile)
		refs, err := readShadows(fr, path)
		if err != nil {
			if strict {
				return fmt.Errorf("model %s: %w", m.Name, err)
			}
			next.failures = append(next.failures, Failure{Dir: path, Error: []string{err.Error()}, At: time.Now()})
			if old := prev.models[m.Name]; old != nil {
				m.shadowRefs = old.shadowRefs
			}
		} else {
			m.shadowRefs = refs
		}
	}
	for _, m := range next.models {
		m.Shadows = nil
		for _, ref := range m.shadowRefs {
			v, err := next.Resolve(ref)
			if err != nil {
				err = fmt.Errorf("%s: shadow %s: %w", ShadowFile, ref, err)
				next.failures = append(next.failures, Failure{
					Dir: filepath.Join(r.opt.Root, m.Name, ShadowFile), Error: []string{err.Error()}, At: time.Now(),
				})
				continue
			}
			if !slices.Contains(m.Shadows, v) {
				m.Shadows = append(m.Shadows, v)
			}
		}
	}
	return nil
}
