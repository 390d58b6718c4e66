using FeitianK8s.Operator.Tests.Helm;
using FeitianK8s.Testing;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// The `helm template` replay itself, on small charts made here: it must print what Helm prints
/// (expected texts follow Helm's documented behaviour) and fail where Helm fails.
/// </summary>
public sealed class HelmRendererSelfTests(ITestOutputHelper output)
{
    private const string ChartYaml = "apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: \"9.0\"\n";
    private const string ValuesYaml = "m:\n  b: 1\n  a: \"true\"\n  c: [x]\nempty: \"\"\nbig: 1000000\n";

    [Fact]
    public async Task Renders_like_helm_template()
    {
        using var chart = MakeChart(new()
        {
            ["_helpers.tpl"] = "{{- define \"demo.name\" -}}{{ .Chart.Name }}-{{ .Release.Name | trunc 5 }}{{- end -}}\n",
            ["a.yaml"] = """
                kind: A
                metadata:
                  name: {{ include "demo.name" . }}
                  namespace: {{ .Release.Namespace }}
                data:
                  {{- toYaml .Values.m | nindent 2 }}
                  d: {{ default "fallback" .Values.empty }}
                  missing: "{{ .Values.nothere }}"
                  template: {{ .Template.Name }}
                  big: {{ .Values.big }}
                  app: {{ .Chart.AppVersion | quote }}
                ---
                kind: B
                """,
            ["blank.yaml"] = "{{- if false }}x{{ end }}\n  \n",
            ["NOTES.txt"] = "installed {{ .Release.Name }}\n",
        });
        var result = await HelmRenderer.RunAsync(output, new HelmRelease("release-x", "ns", []), chart.Path);
        Assert.True(result.Succeeded, result.StandardError);
        // Partials, NOTES.txt and blank output are not printed; documents are split and ordered by kind (unknown kinds by name).
        Assert.Equal("""
            ---
            # Source: demo/templates/a.yaml
            kind: A
            metadata:
              name: demo-relea
              namespace: ns
            data:
              a: "true"
              b: 1
              c:
              - x
              d: fallback
              missing: ""
              template: demo/templates/a.yaml
              big: 1e+06
              app: "9.0"
            ---
            # Source: demo/templates/a.yaml
            kind: B

            """, result.StandardOutput);
    }

    [Theory]
    [InlineData("x: {{ required \"storage.name is required\" .Values.storage }}", false, "storage.name is required")]
    [InlineData("x: {{ nosuchfunc }}", false, "function \"nosuchfunc\" not defined")]
    [InlineData("x: {{ .Chart.appVersion }}", false, "can't evaluate field appVersion")]
    [InlineData("x: {{ include \"undefined.name\" . }}", false, "no template \"undefined.name\"")]
    [InlineData("x: {{ if .Values.m }}", false, "unexpected EOF")]
    [InlineData("a: b: c", false, "YAML parse error on demo/templates/t.yaml")]
    [InlineData("x: {{ .Values.nothere }}", true, "map has no entry for key \"nothere\"")]
    public async Task Fails_where_helm_fails(string template, bool strict, string error)
    {
        using var chart = MakeChart(new() { ["t.yaml"] = template + "\n" });
        var result = await HelmRenderer.RunAsync(output, new HelmRelease("r", "ns", [], strict), chart.Path);
        Assert.False(result.Succeeded);
        Assert.Contains(error, result.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refuses_release_names_helm_refuses()
    {
        using var chart = MakeChart(new() { ["t.yaml"] = "x: 1\n" });
        var result = await HelmRenderer.RunAsync(output, new HelmRelease(new string('x', 54), "ns", []), chart.Path);
        Assert.False(result.Succeeded);
        Assert.Contains("invalid release name", result.StandardError, StringComparison.Ordinal);
    }

    private static TempDirectory MakeChart(Dictionary<string, string> templates)
    {
        var dir = new TempDirectory("feitian-helm-chart");
        File.WriteAllText(dir.Combine("Chart.yaml"), ChartYaml);
        File.WriteAllText(dir.Combine("values.yaml"), ValuesYaml);
        Directory.CreateDirectory(dir.Combine("templates"));
        foreach (var (name, text) in templates)
        {
            File.WriteAllText(dir.Combine("templates", name), text);
        }
        return dir;
    }
}
