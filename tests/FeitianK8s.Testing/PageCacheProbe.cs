using System.Globalization;

namespace FeitianK8s.Testing;

/// <summary>How much of a file sits in the page cache, as util-linux's fincore counts it.</summary>
public static class PageCacheProbe
{
    public static async Task<long> ResidentBytesAsync(ITestOutputHelper output, string path)
    {
        var result = await ExternalTool.RunCheckedAsync(output, "fincore", ["--bytes", "--noheadings", "--output", "RES", path], TimeSpan.FromSeconds(30));
        return long.Parse(result.StandardOutput.Trim(), CultureInfo.InvariantCulture);
    }
}
