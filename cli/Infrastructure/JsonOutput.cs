using FeitianK8s.Core.Views;

namespace FeitianK8s.Cli.Infrastructure;

/// <summary>Prints a --json document (the same serializer the master's console API uses).</summary>
public static class JsonOutput
{
    public static void Write<T>(T value) => Console.Out.WriteLine(StatusJson.Serialize(value));
}
