namespace FeitianK8s.Testing;

/// <summary>Paths inside the repository the tests run from (the folder holding FeitianK8s.sln).</summary>
public static class RepositoryPaths
{
    public static string Root { get; } = FindRoot();

    public static string Combine(params string[] parts) => Path.Combine([Root, .. parts]);

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "FeitianK8s.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException($"no FeitianK8s.sln above {AppContext.BaseDirectory}");
    }
}
