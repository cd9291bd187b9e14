package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/models"
)

// runManifest prints a manifest for a model artifact: its format from its
// bytes, one input per model column named as the artifact names it, each a
// catalog feature when the catalog has one of that name and a request
// input (with a TODO) otherwise. Golden rows are left to the user.
func runManifest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("manifest", stdout)
	catalogPath := fs.String("catalog", "", "catalog file whose features the inputs are matched to")
	configPath := fs.String("config", "", "configuration file naming the catalog (instead of --catalog)")
	name := fs.String("name", "", "the model's name (default: the artifact's file name)")
	version := fs.String("version", "1", "the model version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("manifest needs one artifact file (seer manifest --help)")
	}
	path := fs.Arg(0)
	catalog, err := flagCatalog(*catalogPath, *configPath)
	if err != nil {
		return err
	}
	if catalog == nil {
		return usagef("manifest needs --catalog FILE (or --config FILE) to match the artifact's inputs to features")
	}
	if *name == "" {
		*name = modelNameOf(path)
	}
	if !manifestName.MatchString(*name) || !manifestName.MatchString(*version) {
		return usagef("--name %q, --version %q: want letters, digits, _ . - (starting with a letter or digit)", *name, *version)
	}
	data, format, err := readArtifact(path)
	if err != nil {
		return err
	}
	m, err := models.Load(format, data, models.Options{})
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	text := writeManifest(m, catalog, manifestHead{
		name: *name, version: *version, format: format, artifact: filepath.Base(path),
		source: path,
	})
	// What is printed must parse as a manifest.
	if _, err := models.ParseManifest(text); err != nil {
		return fmt.Errorf("the manifest written for %s does not parse: %w", path, err)
	}
	_, err = stdout.Write(text)
	return err
}

// manifestName is what a manifest accepts as a model name or version.
var manifestName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// readArtifact reads a model file: its format from its first bytes, then
// the whole file within that format's size cap.
func readArtifact(path string) ([]byte, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, "", err
	}
	if !info.Mode().IsRegular() {
		return nil, "", fmt.Errorf("%s: not a regular file", path)
	}
	head := make([]byte, models.HeadSize)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, "", err
	}
	format := models.Sniff(head[:n])
	switch {
	case format == "":
		return nil, "", fmt.Errorf("%s: not a model artifact seer can tell from its first bytes "+
			"(LightGBM text, XGBoost JSON or UBJSON, seer's scikit-learn export, ONNX)", path)
	case format == models.FormatLinear:
		return nil, "", fmt.Errorf("%s: a linear model matches its weights to inputs by name: "+
			"list its inputs in a manifest of format linear (docs/linear.md)", path)
	case models.MaxSize(format) == 0:
		// XGBoost's old binary format: CheckHead says how to re-save it.
		return nil, "", fmt.Errorf("%s: %w", path, models.CheckHead(models.FormatXGBoost, head[:n]))
	}
	if limit := models.MaxSize(format); info.Size() > limit {
		return nil, "", fmt.Errorf("%s: %d bytes is over the %s limit of %d", path, info.Size(), format, limit)
	}
	data := make([]byte, info.Size())
	copy(data, head[:n])
	if _, err := io.ReadFull(f, data[n:]); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return data, format, nil
}

// manifestHead is what a manifest says before its inputs.
type manifestHead struct {
	name, version, format, artifact string
	source                          string // the artifact's path, for the comment
}

// writeManifest writes a manifest for m: one input per column.
func writeManifest(m models.Model, catalog *features.Catalog, h manifestHead) []byte {
	names := models.InputNames(m)
	tensors := models.InputTensors(m)
	var b bytes.Buffer
	named := "named by the artifact"
	if names == nil {
		named = "which the artifact does not name"
	}
	fmt.Fprintf(&b, "# Written by seer manifest from %s (%s, %d columns %s).\n", h.source, h.format, m.NumFeatures(), named)
	fmt.Fprintf(&b, "# Check every TODO and add golden rows, then: seer validate --catalog CATALOG DIR\n")
	fmt.Fprintf(&b, "name: %s\nversion: %s\nformat: %s\nartifact: %s\n", yamlScalar(h.name), yamlScalar(h.version), h.format, yamlScalar(h.artifact))
	b.WriteString("inputs:\n")
	several := len(uniq(tensors)) > 1 // then every input names its graph input
	within := make(map[string]int)    // per tensor, the columns so far
	for i := range m.NumFeatures() {
		if names != nil {
			writeInput(&b, names[i], catalog)
		} else {
			// An unnamed column: a request input to name, called after its
			// tensor when it fills one.
			name, where := fmt.Sprintf("column_%d", i+1), fmt.Sprintf("column %d", i+1)
			if tensors != nil {
				t := tensors[i]
				name, where = safeName(fmt.Sprintf("%s_%d", t, within[t])), fmt.Sprintf("column %d, of graph input %s", within[t]+1, t)
				within[t]++
			}
			fmt.Fprintf(&b, "  - name: %s  # TODO: the artifact does not name its columns: name this one (%s) and say where it comes from\n", name, where)
			b.WriteString("    source: request\n    type: float\n")
		}
		if several {
			fmt.Fprintf(&b, "    tensor: %s\n", yamlScalar(tensors[i]))
		}
	}
	b.WriteString(`# golden:  # TODO: rows the model must reproduce, with the scores its own library gave them
#   - inputs: {NAME: VALUE, ...}  # inputs left out take their defaults
#     scores: [SCORE]
#     tolerance: 1e-6
`)
	return b.Bytes()
}

// writeInput writes the input of the column the artifact names column.
func writeInput(b *bytes.Buffer, column string, catalog *features.Catalog) {
	name := column
	if !inputName.MatchString(name) {
		name = safeName(column)
	}
	spec := catalog.Spec(name)
	fmt.Fprintf(b, "  - name: %s\n", yamlScalar(name))
	if name != column {
		fmt.Fprintf(b, "    column: %s\n", yamlScalar(column))
	}
	switch {
	case spec == nil:
		b.WriteString("    source: request  # TODO: not in the catalog: the caller supplies it; check its type and add a default\n")
		b.WriteString("    type: float\n")
	case spec.Type == features.String:
		b.WriteString("    categories: []  # TODO: the catalog's strings, in the order of the codes the model was trained on\n")
	case spec.Type == features.Vector || spec.Type == features.List:
		fmt.Fprintf(b, "    # TODO: %s is a %s in the catalog; one model column takes one number\n", name, spec.Type)
	}
}

// modelNameOf returns a model name for the artifact at path: its file
// name without the extension, made a valid name.
func modelNameOf(path string) string {
	base := filepath.Base(path)
	n := regexp.MustCompile(`[^A-Za-z0-9_.-]`).ReplaceAllString(strings.TrimSuffix(base, filepath.Ext(base)), "_")
	n = strings.TrimLeft(n, "_.-")
	if n == "" {
		return "model"
	}
	return n
}

// inputName is what a manifest accepts as an input name.
var inputName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.:-]*$`)

// safeName turns s into an input or model name: characters a name cannot
// hold become _, and a name that would start with a digit or another
// character gets a leading _.
func safeName(s string) string {
	n := regexp.MustCompile(`[^A-Za-z0-9_.:-]`).ReplaceAllString(s, "_")
	if n == "" || !(n[0] == '_' || n[0] >= 'A' && n[0] <= 'Z' || n[0] >= 'a' && n[0] <= 'z') {
		n = "_" + n
	}
	return n
}

// yamlScalar writes s as a YAML scalar, quoted when YAML would read it
// otherwise (a number, a boolean, special characters).
func yamlScalar(s string) string {
	out, err := yaml.Marshal(s)
	if err != nil {
		return fmt.Sprintf("%q", s)
	}
	return strings.TrimSuffix(string(out), "\n")
}

func uniq(s []string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, v := range s {
		m[v] = true
	}
	return m
}
