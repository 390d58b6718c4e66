package main

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

type manifest struct {
	Source  string
	Content string
	Kind    string
	Hook    bool
}

// simpleHead is the part of each document Helm reads before sending it (releaseutil.SimpleHead).
type simpleHead struct {
	Version  string `json:"apiVersion"`
	Kind     string `json:"kind,omitempty"`
	Metadata *struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata,omitempty"`
}

// installOrder is Helm's releaseutil.InstallOrder.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
	"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
	"PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
	"ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
	"RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
}

var manifestSeparator = regexp.MustCompile("(?:^|\\s*\n)---\\s*")

// printManifests is what `helm template` prints: NOTES.txt and blank files left out, each file
// split into documents (releaseutil.SplitManifests), each document's head parsed as YAML (a parse
// error fails the release), documents ordered by kind as Helm installs them, hooks last.
func printManifests(rendered map[string]string) (string, error) {
	var files []string
	for name := range rendered {
		files = append(files, name)
	}
	sort.Strings(files)
	var generic, hooks []manifest
	for _, file := range files {
		content := rendered[file]
		if strings.HasSuffix(file, "NOTES.txt") || strings.TrimSpace(content) == "" {
			continue
		}
		for _, doc := range manifestSeparator.Split(strings.TrimSpace(content), -1) {
			if doc == "" {
				continue
			}
			doc = strings.TrimSpace(doc)
			var head simpleHead
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return "", fmt.Errorf("YAML parse error on %s: %w", file, err)
			}
			m := manifest{Source: file, Content: doc, Kind: head.Kind}
			if head.Metadata != nil && head.Metadata.Annotations["helm.sh/hook"] != "" {
				m.Hook = true
				hooks = append(hooks, m)
			} else {
				generic = append(generic, m)
			}
		}
	}
	sortByKind(generic)
	var out strings.Builder
	for _, m := range append(generic, hooks...) {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", m.Source, m.Content)
	}
	return out.String(), nil
}

// sortByKind is Helm's sortManifestsByKind: known kinds in install order, unknown kinds last by name.
func sortByKind(manifests []manifest) {
	rank := map[string]int{}
	for i, k := range installOrder {
		rank[k] = i
	}
	sort.SliceStable(manifests, func(i, j int) bool {
		a, aok := rank[manifests[i].Kind]
		b, bok := rank[manifests[j].Kind]
		switch {
		case !aok && !bok:
			return manifests[i].Kind < manifests[j].Kind
		case !aok:
			return false
		case !bok:
			return true
		}
		return a < b
	})
}
