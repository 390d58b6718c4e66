using System.Text.RegularExpressions;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// No Docker engine runs on this machine, so the images cannot be built here. These tests
/// replay each Dockerfile's build stage instead, as Docker would run it: only what its COPY
/// lines bring into the build context (minus its .dockerignore), then its RUN dotnet publish,
/// and check that the program the runtime stage starts is in the output, and that the
/// runtime stage installs the tools the program calls.
/// </summary>
public sealed partial class DockerfileBuildStageTests(ITestOutputHelper output)
{
    public static TheoryData<string, string[]> Images => new()
    {
        { "csi-driver/Dockerfile", ["nbd-client", "libnbd-bin", "fuse3", "e2fsprogs", "xfsprogs", "util-linux", "mount"] },
        { "deploy/master.Dockerfile", [] },
        { "deploy/chunkserver.Dockerfile", [] },
        { "deploy/operator.Dockerfile", [] },
    };

    [Theory]
    [MemberData(nameof(Images))]
    public async Task Build_stage_publishes_the_entrypoint_from_only_what_the_Dockerfile_copies(string dockerfile, string[] runtimePackages)
    {
        var root = RepositoryPaths.Root;
        var stages = Dockerfile.Parse(File.ReadAllText(Path.Combine(root, dockerfile)));
        Assert.Equal(2, stages.Count);
        var (build, runtime) = (stages[0], stages[1]);
        var ignore = DockerIgnore.Load(Path.Combine(root, dockerfile + ".dockerignore"), Path.Combine(root, ".dockerignore"));

        using var work = new TempDirectory("feitian-docker");
        var filesystem = work.Combine("rootfs");
        var workdir = "/";
        var published = false;
        foreach (var (instruction, args) in build.Instructions)
        {
            switch (instruction)
            {
                case "WORKDIR":
                    workdir = args.StartsWith('/') ? args : Path.Combine(workdir, args);
                    break;
                case "COPY":
                    var parts = args.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    Assert.DoesNotContain(parts, p => p.StartsWith("--", StringComparison.Ordinal));
                    var destination = Path.Combine(filesystem + workdir, parts[^1]);
                    foreach (var source in parts[..^1])
                    {
                        CopyIntoImage(root, source.TrimEnd('/'), destination, ignore, parts.Length > 2 || parts[^1].EndsWith('/'));
                    }
                    break;
                case "RUN":
                    var publish = PublishCommand().Match(args);
                    Assert.True(publish.Success, $"{dockerfile}: the replay only knows 'dotnet publish PROJECT ... -o DIR', not: {args}");
                    var outputDir = filesystem + publish.Groups["out"].Value;
                    var arguments = publish.Groups["args"].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)
                        .Concat(["-o", outputDir]);
                    await ExternalTool.RunCheckedAsync(output, "dotnet", ["publish", .. arguments], TimeSpan.FromMinutes(8), filesystem + workdir);
                    published = true;
                    break;
                case "FROM" or "ENV" or "ARG" or "LABEL":
                    break;
                default:
                    Assert.Fail($"{dockerfile}: instruction {instruction} in the build stage is not replayed");
                    break;
            }
        }
        Assert.True(published, $"{dockerfile}: the build stage never runs dotnet publish");

        var copiedApp = runtime.Instructions.Single(i => i.Instruction == "COPY" && i.Args.StartsWith("--from=build", StringComparison.Ordinal)).Args;
        var appSource = copiedApp.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        var entrypoint = runtime.Instructions.Single(i => i.Instruction == "ENTRYPOINT").Args;
        var program = EntrypointProgram().Matches(entrypoint).Select(m => m.Value).Last(p => p.StartsWith("/app/", StringComparison.Ordinal));
        var inBuildStage = filesystem + appSource.TrimEnd('/') + "/" + Path.GetFileName(program);
        output.WriteLine($"{dockerfile}: entrypoint {entrypoint} -> {inBuildStage}");
        Assert.True(File.Exists(inBuildStage), $"{dockerfile}: the entrypoint {program} is not in the published output {appSource}");

        var installs = string.Join(' ', runtime.Instructions.Where(i => i.Instruction == "RUN").Select(i => i.Args));
        foreach (var package in runtimePackages)
        {
            Assert.Matches($@"apt-get install[^&]*\s{Regex.Escape(package)}(\s|$)", installs);
        }
    }

    private static void CopyIntoImage(string root, string source, string destination, DockerIgnore ignore, bool intoDirectory)
    {
        var from = Path.GetFullPath(Path.Combine(root, source));
        Assert.StartsWith(root, from);
        if (File.Exists(from))
        {
            var target = intoDirectory ? Path.Combine(destination, Path.GetFileName(from)) : destination;
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(from, target, overwrite: true);
            return;
        }
        Assert.True(Directory.Exists(from), $"COPY source {source} does not exist");
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var relativeToContext = Path.GetRelativePath(root, file).Replace('\\', '/');
            if (ignore.Excludes(relativeToContext))
            {
                continue;
            }
            var target = Path.Combine(destination, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true);
        }
    }

    [GeneratedRegex(@"^dotnet publish (?<args>.*?)\s-o\s(?<out>/\S+)(?<rest>.*)$")]
    private static partial Regex PublishCommand();

    [GeneratedRegex(@"/[A-Za-z0-9_./-]+")]
    private static partial Regex EntrypointProgram();
}

/// <summary>A Dockerfile split into stages of (instruction, arguments), continuation lines joined.</summary>
public sealed record Dockerfile(List<(string Instruction, string Args)> Instructions)
{
    public static List<Dockerfile> Parse(string text)
    {
        var joined = Regex.Replace(text, @"\\\r?\n", " ");
        var stages = new List<Dockerfile>();
        foreach (var raw in joined.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }
            var space = line.IndexOf(' ');
            var instruction = (space < 0 ? line : line[..space]).ToUpperInvariant();
            var args = space < 0 ? "" : Regex.Replace(line[(space + 1)..].Trim(), @"\s+", " ");
            if (instruction == "FROM")
            {
                stages.Add(new Dockerfile([]));
            }
            stages[^1].Instructions.Add((instruction, args));
        }
        return stages;
    }
}

/// <summary>The patterns of a .dockerignore (the Dockerfile's own, else the context's), matched as Docker does for these simple forms.</summary>
public sealed class DockerIgnore(List<Regex> patterns)
{
    public static DockerIgnore Load(params string[] candidates)
    {
        var file = candidates.FirstOrDefault(File.Exists);
        var lines = file is null ? [] : File.ReadAllLines(file).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#'));
        return new DockerIgnore(lines.Select(ToRegex).ToList());
    }

    public bool Excludes(string relativePath) => patterns.Any(p => p.IsMatch(relativePath));

    private static Regex ToRegex(string pattern)
    {
        var body = Regex.Escape(pattern.TrimEnd('/').TrimStart('/'))
            .Replace(@"\*\*/", "(.*/)?", StringComparison.Ordinal)
            .Replace(@"\*", "[^/]*", StringComparison.Ordinal)
            .Replace(@"\?", "[^/]", StringComparison.Ordinal);
        return new Regex($"^{body}(/.*)?$");
    }
}
