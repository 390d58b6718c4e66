using System.Diagnostics;
using System.Globalization;
using Spectre.Console;

namespace FeitianK8s.Cli.Infrastructure;

/// <summary>
/// Progress of long work that has no byte count (a snapshot waiting for the volume's engine, a
/// clone, a delete, `up` starting its servers), on standard error so standard output keeps the
/// result: a spinner with the seconds spent when standard error is a terminal; otherwise plain
/// lines: `WHAT: still running (N s)` every <see cref="PlainInterval"/> and `WHAT: done in N.N s`
/// at the end. A failure adds no line of its own: the error stays one line on standard error.
/// Same terminal test as <see cref="TransferProgress"/>.
/// </summary>
public static class WorkProgress
{
    public static readonly TimeSpan PlainInterval = TimeSpan.FromSeconds(10);

    public static async Task RunAsync(string what, Func<Task> work) =>
        await RunAsync(what, async () =>
        {
            await work();
            return true;
        });

    public static async Task<T> RunAsync<T>(string what, Func<Task<T>> work)
    {
        var clock = Stopwatch.StartNew();
        var result = Console.IsErrorRedirected ? await PlainAsync(what, clock, work) : await SpinnerAsync(what, clock, work);
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{what}: done in {clock.Elapsed.TotalSeconds:0.0} s"));
        return result;
    }

    private static async Task<T> PlainAsync<T>(string what, Stopwatch clock, Func<Task<T>> work)
    {
        var task = work();
        while (await Task.WhenAny(task, Task.Delay(PlainInterval)) != task)
        {
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{what}: still running ({clock.Elapsed.TotalSeconds:0} s)"));
        }
        return await task;
    }

    private static async Task<T> SpinnerAsync<T>(string what, Stopwatch clock, Func<Task<T>> work)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        return await console.Status().Spinner(Spinner.Known.Dots).StartAsync(Markup.Escape(what), async status =>
        {
            var task = work();
            while (await Task.WhenAny(task, Task.Delay(TimeSpan.FromMilliseconds(250))) != task)
            {
                status.Status(Markup.Escape(string.Create(CultureInfo.InvariantCulture, $"{what} ({clock.Elapsed.TotalSeconds:0} s)")));
            }
            return await task;
        });
    }
}
