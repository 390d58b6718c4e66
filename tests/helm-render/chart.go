package main

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"sigs.k8s.io/yaml"
)

// Metadata is Helm's chart.Metadata: templates see .Chart as this struct, so a misspelt field
// (.Chart.Appversion) fails the render as it does in Helm.
type Metadata struct {
	Name         string            `json:"name,omitempty"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Version      string            `json:"version,omitempty"`
	Description  string            `json:"description,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Maintainers  []*Maintainer     `json:"maintainers,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	APIVersion   string            `json:"apiVersion,omitempty"`
	Condition    string            `json:"condition,omitempty"`
	Tags         string            `json:"tags,omitempty"`
	AppVersion   string            `json:"appVersion,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Dependencies []*Dependency     `json:"dependencies,omitempty"`
	Type         string            `json:"type,omitempty"`
}

type Maintainer struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
	URL   string `json:"url,omitempty"`
}

type Dependency struct {
	Name       string `json:"name"`
	Version    string `json:"version,omitempty"`
	Repository string `json:"repository"`
	Condition  string `json:"condition,omitempty"`
	Alias      string `json:"alias,omitempty"`
}

type templateFile struct {
	Name string // e.g. templates/deployment.yaml
	Data string
}

type chart struct {
	Metadata  *Metadata
	Values    map[string]interface{}
	Templates []templateFile
	Files     Files
	// Schema is values.schema.json, nil when the chart has none.
	Schema []byte
}

// Files is Helm's chart.Files as templates see it (.Files.Get): every file of the chart other
// than Chart.yaml, values.yaml and templates/, keyed by its slash-separated path.
type Files map[string][]byte

// Get returns a file's content, or "" when the chart has no such file (as Helm's Files.Get).
func (f Files) Get(name string) string { return string(f[name]) }

// readFiles loads the chart's other files as Helm's loader does.
func readFiles(dir string) (Files, error) {
	files := Files{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if info.IsDir() {
			if rel == "templates" {
				return filepath.SkipDir
			}
			return nil
		}
		if rel == "Chart.yaml" || rel == "values.yaml" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = data
		return nil
	})
	return files, err
}

// loadChart reads a chart directory as Helm's loader does (Chart.yaml, values.yaml, everything
// under templates/, values.schema.json). Subcharts and .helmignore are not replayed: a chart
// using them is refused rather than rendered differently from Helm.
func loadChart(dir string) (*chart, error) {
	for _, unsupported := range []string{"charts", "requirements.yaml", ".helmignore"} {
		if _, err := os.Stat(filepath.Join(dir, unsupported)); err == nil {
			return nil, fmt.Errorf("%s: this replay of helm does not handle %s", dir, unsupported)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	md := new(Metadata)
	if err := yaml.Unmarshal(raw, md); err != nil {
		return nil, fmt.Errorf("cannot load Chart.yaml: %w", err)
	}
	if err := validateMetadata(md); err != nil {
		return nil, fmt.Errorf("validation: %w", err)
	}
	if len(md.Dependencies) > 0 {
		return nil, errors.New("this replay of helm does not handle chart dependencies")
	}
	values := map[string]interface{}{}
	if raw, err := os.ReadFile(filepath.Join(dir, "values.yaml")); err == nil {
		if values, err = readValues(raw); err != nil {
			return nil, fmt.Errorf("cannot load values.yaml: %w", err)
		}
	}
	templates, err := readTemplates(dir)
	if err != nil {
		return nil, err
	}
	files, err := readFiles(dir)
	if err != nil {
		return nil, err
	}
	schema, err := os.ReadFile(filepath.Join(dir, "values.schema.json"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	return &chart{Metadata: md, Values: values, Templates: templates, Files: files, Schema: schema}, nil
}

// validateMetadata is Helm's Metadata.Validate, which `helm install` and `helm template` run on load.
func validateMetadata(md *Metadata) error {
	switch {
	case md.APIVersion == "":
		return errors.New("chart.metadata.apiVersion is required")
	case md.Name == "":
		return errors.New("chart.metadata.name is required")
	case md.Name != filepath.Base(md.Name):
		return fmt.Errorf("chart.metadata.name %q is invalid", md.Name)
	case md.Version == "":
		return errors.New("chart.metadata.version is required")
	case md.Type != "" && md.Type != "application" && md.Type != "library":
		return errors.New("chart.metadata.type must be application or library")
	}
	if _, err := semver.NewVersion(md.Version); err != nil {
		return fmt.Errorf("chart.metadata.version %q is invalid", md.Version)
	}
	if md.Type == "library" {
		return errors.New("library charts are not installable")
	}
	return nil
}

// readValues is Helm's chartutil.ReadValues: YAML through JSON, so every number is a float64.
func readValues(data []byte) (map[string]interface{}, error) {
	values := map[string]interface{}{}
	err := yaml.Unmarshal(data, &values)
	if values == nil {
		values = map[string]interface{}{}
	}
	return values, err
}

func readTemplates(dir string) ([]templateFile, error) {
	var templates []templateFile
	root := filepath.Join(dir, "templates")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		templates = append(templates, templateFile{Name: filepath.ToSlash(rel), Data: string(data)})
		return nil
	})
	return templates, err
}

// readValueFiles merges -f files in order, later keys winning (Helm's mergeMaps).
func readValueFiles(files []string) (map[string]interface{}, error) {
	base := map[string]interface{}{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		current := map[string]interface{}{}
		if err := yaml.Unmarshal(raw, &current); err != nil {
			return nil, fmt.Errorf("failed to parse %s: %w", f, err)
		}
		base = mergeMaps(base, current)
	}
	return base, nil
}

func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if v, ok := v.(map[string]interface{}); ok {
			if bv, ok := out[k]; ok {
				if bv, ok := bv.(map[string]interface{}); ok {
					out[k] = mergeMaps(bv, v)
					continue
				}
			}
		}
		out[k] = v
	}
	return out
}

// coalesceTables is Helm's chartutil.CoalesceTables: user values over the chart's defaults,
// tables merged deeply, and a user null deletes the key.
func coalesceTables(dst, src map[string]interface{}) map[string]interface{} {
	if dst == nil {
		dst = map[string]interface{}{}
	}
	for key, val := range src {
		dv, ok := dst[key]
		switch {
		case ok && dv == nil:
			delete(dst, key)
		case !ok:
			dst[key] = val
		default:
			srcTable, srcIsTable := val.(map[string]interface{})
			dstTable, dstIsTable := dv.(map[string]interface{})
			if srcIsTable && dstIsTable {
				coalesceTables(dstTable, srcTable)
			} else if srcIsTable != dstIsTable && val != nil {
				fmt.Fprintf(os.Stderr, "warning: cannot overwrite table with non table for %s (%v)\n", key, val)
			}
		}
	}
	return dst
}

var validReleaseName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// validateReleaseName is Helm's chartutil.ValidateReleaseName (at most 53 characters).
func validateReleaseName(name string) error {
	if name == "" || len(name) > 53 || !validReleaseName.MatchString(name) {
		return fmt.Errorf("invalid release name %q: names must be at most 53 characters and match %s", name, validReleaseName)
	}
	return nil
}

// Capabilities is Helm's chartutil.Capabilities as `helm template` fills it (no cluster).
type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion BuildInfo
}

type KubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (kv *KubeVersion) String() string     { return kv.Version }
func (kv *KubeVersion) GitVersion() string { return kv.Version }

type VersionSet []string

func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type BuildInfo struct {
	Version      string `json:"version,omitempty"`
	GitCommit    string `json:"git_commit,omitempty"`
	GitTreeState string `json:"git_tree_state,omitempty"`
	GoVersion    string `json:"go_version,omitempty"`
}

// builtinAPIVersions is the part of Helm's default version set (every group/version client-go
// knows) that charts commonly test for.
var builtinAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "autoscaling/v1", "autoscaling/v2", "policy/v1",
	"rbac.authorization.k8s.io/v1", "networking.k8s.io/v1", "storage.k8s.io/v1",
	"coordination.k8s.io/v1", "apiextensions.k8s.io/v1", "admissionregistration.k8s.io/v1",
	"scheduling.k8s.io/v1", "discovery.k8s.io/v1", "events.k8s.io/v1", "node.k8s.io/v1",
	"certificates.k8s.io/v1", "apiregistration.k8s.io/v1",
}

func newCapabilities(kubeVersion string) (*Capabilities, error) {
	v, err := semver.NewVersion(kubeVersion)
	if err != nil {
		return nil, fmt.Errorf("invalid kube version %q: %w", kubeVersion, err)
	}
	return &Capabilities{
		KubeVersion: KubeVersion{
			Version: "v" + v.String(),
			Major:   fmt.Sprint(v.Major()),
			Minor:   fmt.Sprint(v.Minor()),
		},
		APIVersions: append(VersionSet{}, builtinAPIVersions...),
		HelmVersion: BuildInfo{Version: "v3.14.0", GoVersion: "go1.19"},
	}, nil
}

// sortTemplates is Helm's order of parsing: deepest paths first, then reverse lexical order.
func sortTemplates(names []string) {
	sort.Slice(names, func(i, j int) bool {
		a, b := names[i], names[j]
		ca, cb := strings.Count(a, "/"), strings.Count(b, "/")
		if ca == cb {
			return a > b
		}
		return ca > cb
	})
}

func isPartial(name string) bool { return strings.HasPrefix(path.Base(name), "_") }
