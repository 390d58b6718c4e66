// Command helm-render replays `helm template` for one chart without Helm: it loads the chart
// as Helm's loader does, renders every template with Go's text/template, Sprig and Helm's own
// template functions (the same engine and function libraries Helm builds with), and prints the
// manifests as `helm template` prints them. It exits non-zero with the error on any load, parse,
// render or YAML error, as `helm template` would.
//
// Usage: helm-render -chart DIR [-name RELEASE] [-namespace NS] [-f values.yaml]... [-strict] [-kube-version v1.29.0]
//        [-api-versions monitoring.coreos.com/v1]... (extra .Capabilities.APIVersions, as helm template --api-versions)
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

func main() {
	chartDir := flag.String("chart", "", "chart directory")
	name := flag.String("name", "release-name", "release name (helm template's default)")
	namespace := flag.String("namespace", "default", "release namespace")
	kubeVersion := flag.String("kube-version", "v1.29.0", "Kubernetes version for .Capabilities")
	strict := flag.Bool("strict", false, "fail on references to missing values (missingkey=error, as helm lint --strict)")
	var files valueFiles
	flag.Var(&files, "f", "values file merged over the chart's values.yaml (repeatable, later wins)")
	notes := flag.Bool("notes", false, "print the rendered NOTES.txt instead of the manifests (what helm install prints after installing)")
	var apiVersions valueFiles
	flag.Var(&apiVersions, "api-versions", "extra API version for .Capabilities.APIVersions (repeatable)")
	flag.Parse()
	if *chartDir == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	out, err := run(*chartDir, *name, *namespace, *kubeVersion, *strict, files, apiVersions, *notes)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(out)
}

func run(chartDir, name, namespace, kubeVersion string, strict bool, files []string, apiVersions []string, notes bool) (string, error) {
	if err := validateReleaseName(name); err != nil {
		return "", err
	}
	chart, err := loadChart(chartDir)
	if err != nil {
		return "", err
	}
	user, err := readValueFiles(files)
	if err != nil {
		return "", err
	}
	caps, err := newCapabilities(kubeVersion)
	if err != nil {
		return "", err
	}
	caps.APIVersions = append(caps.APIVersions, apiVersions...)
	values := coalesceTables(user, chart.Values)
	if err := validateValues(chart.Metadata.Name, chart.Schema, values); err != nil {
		return "", err
	}
	top := map[string]interface{}{
		"Chart":        chart.Metadata,
		"Capabilities": caps,
		"Release": map[string]interface{}{
			"Name":      name,
			"Namespace": namespace,
			"IsUpgrade": false,
			"IsInstall": true,
			"Revision":  1,
			"Service":   "Helm",
		},
		"Values":    values,
		"Files":     chart.Files,
		"Subcharts": map[string]interface{}{},
	}
	rendered, err := render(chart, top, strict)
	if err != nil {
		return "", err
	}
	if notes {
		return rendered[chart.Metadata.Name+"/templates/NOTES.txt"], nil
	}
	return printManifests(rendered)
}
