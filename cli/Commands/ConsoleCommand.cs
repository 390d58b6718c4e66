using System.ComponentModel;
using FeitianK8s.Cli.Infrastructure;
using Spectre.Console.Cli;

namespace FeitianK8s.Cli.Commands;

public sealed class ConsoleSettings : ClusterSettings
{
    [CommandOption("--port <PORT>")]
    [Description("TCP port on 127.0.0.1 for the browser (default 0: one the OS picks; the URL is printed).")]
    public int Port { get; init; }

    public override Spectre.Console.ValidationResult Validate() => Port is < 0 or > 65535
        ? Spectre.Console.ValidationResult.Error("--port must be a TCP port (0 lets the OS choose)")
        : Spectre.Console.ValidationResult.Success();
}

/// <summary>
/// `feitian console`: the masters' web console for a browser on this machine, through
/// <see cref="ConsoleProxy"/> with the CLI's certificate, until Ctrl+C.
/// </summary>
public sealed class ConsoleCommand : AsyncCommand<ConsoleSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, ConsoleSettings settings, CancellationToken cancellationToken)
    {
        if (settings.Insecure)
        {
            throw new CliException("--insecure: a cluster without TLS serves its console unauthenticated on every master's HTTP port "
                + "(the one of /metrics; `feitian up --insecure` prints it as `console:`): open that in a browser");
        }
        var masters = settings.ResolveMasters();
        var tls = settings.ResolveTls()
            ?? throw new CliException("the console needs this client's certificate: give --data DIR of a `feitian up` cluster, or --tls-ca/--tls-cert/--tls-key "
                + "(a certificate of the cluster's CA with role admin or operator)");
        ConsoleProxy proxy;
        try
        {
            proxy = await ConsoleProxy.StartAsync(masters, tls, settings.Port, null, cancellationToken);
        }
        catch (ArgumentException error)
        {
            throw new CliException(error.Message);
        }
        catch (IOException error)
        {
            throw new CliException($"cannot listen on 127.0.0.1:{settings.Port}: {error.Message}");
        }
        await using (proxy)
        {
            Console.Out.WriteLine($"console: {proxy.Url}");
            Console.Out.WriteLine($"masters: {string.Join(", ", masters)} (any of them answers with the leader's data); Ctrl+C stops");
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
            }
        }
        return 0;
    }
}
