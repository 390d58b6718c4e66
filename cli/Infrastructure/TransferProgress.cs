using System.Diagnostics;
using FeitianK8s.Core.Common;
using Spectre.Console;

namespace FeitianK8s.Cli.Infrastructure;

/// <summary>
/// Progress of a long copy, on standard error (standard output may carry the data): a live bar
/// when standard error is a terminal, otherwise a plain line at every quarter and one at the end.
/// </summary>
public static class TransferProgress
{
    /// <summary>Runs <paramref name="work"/>, which reports the bytes done so far through its argument.</summary>
    public static async Task RunAsync(string what, long totalBytes, Func<Action<long>, Task> work)
    {
        var clock = Stopwatch.StartNew();
        if (!Console.IsErrorRedirected)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            await console.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .StartAsync(async ctx =>
                {
                    var task = ctx.AddTask(Markup.Escape(what), maxValue: Math.Max(1, totalBytes));
                    await work(done =>
                    {
                        task.Value = done;
                        task.Description = Markup.Escape($"{what} {ByteSize.Human(done)} of {ByteSize.Human(totalBytes)}");
                    });
                    task.Value = task.MaxValue;
                });
        }
        else
        {
            var quarter = 0;
            await work(done =>
            {
                var now = totalBytes <= 0 ? 4 : (int)Math.Min(4, done * 4 / totalBytes);
                if (now > quarter && now < 4)
                {
                    quarter = now;
                    Console.Error.WriteLine($"{what}: {ByteSize.Human(done)} of {ByteSize.Human(totalBytes)} ({now * 25}%)");
                }
            });
        }
        var seconds = Math.Max(clock.Elapsed.TotalSeconds, 0.001);
        Console.Error.WriteLine($"{what}: {ByteSize.Human(totalBytes)} in {seconds:0.0} s ({ByteSize.Human(totalBytes / seconds)}/s)");
    }
}
