using Microsoft.AspNetCore.Builder;

namespace FeitianK8s.Core.Common;

/// <summary>
/// The slim ASP.NET Core builder every server host starts from, without file watching.
/// <c>WebApplication.CreateSlimBuilder()</c> takes the current directory as content root and
/// reloads appsettings*.json on change, which watches the content root recursively (on Linux one
/// inotify watch per subdirectory): started from the parent of a data directory, every chunk
/// write then wakes a ".NET File Watch" thread in each such process. Our servers take no
/// settings from files, so: content root = the program's directory and no reload, hence no watcher.
/// </summary>
public static class ServerHostBuilder
{
    /// <summary>Host setting read before the default json sources are added; false makes them reloadOnChange: false.</summary>
    public const string NoConfigReloadArgument = "--hostBuilder:reloadConfigOnChange=false";

    public static WebApplicationBuilder CreateSlim() =>
        WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [NoConfigReloadArgument],
            ContentRootPath = AppContext.BaseDirectory,
        });
}
