namespace FeitianK8s.Core.Cluster;

/// <summary>Finds a server's apphost next to the running program, falling back to `dotnet NAME.dll`.</summary>
public sealed record ServerExecutable(string FileName, IReadOnlyList<string> PrefixArguments)
{
    public static ServerExecutable Find(string name, string? directory = null)
    {
        var dir = directory ?? AppContext.BaseDirectory;
        var apphost = Path.Combine(dir, OperatingSystem.IsWindows() ? name + ".exe" : name);
        if (File.Exists(apphost))
        {
            return new ServerExecutable(apphost, []);
        }
        var dll = Path.Combine(dir, name + ".dll");
        if (File.Exists(dll))
        {
            return new ServerExecutable("dotnet", [dll]);
        }
        throw new FileNotFoundException($"{name} not found in {dir} (neither apphost nor {name}.dll); reference its project from the host program", apphost);
    }
}
