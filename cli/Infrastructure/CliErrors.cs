using FeitianK8s.Core.Pangu;
using Grpc.Core;
using Spectre.Console.Cli;

namespace FeitianK8s.Cli.Infrastructure;

/// <summary>An error the user caused or can fix, reported without a stack trace.</summary>
public sealed class CliException(string message) : Exception(message);

public static class CliErrors
{
    /// <summary>Prints one line on stderr and returns the exit code: 2 for usage errors, 1 otherwise.</summary>
    public static int Report(Exception error)
    {
        var (code, message) = error switch
        {
            CommandParseException or CommandRuntimeException => (2, $"{error.Message.TrimEnd('.')} (see `feitian --help`, or `feitian COMMAND --help`)"),
            CliException => (1, error.Message),
            PanguException pangu => (1, pangu.Message),
            FencedException fenced => (1, fenced.Message),
            RpcException rpc when rpc.StatusCode == StatusCode.Unavailable => (1, $"cannot reach the master: {rpc.Status.Detail}"),
            RpcException rpc => (1, $"{rpc.Status.Detail} ({rpc.StatusCode})"),
            OperationCanceledException => (130, "interrupted"),
            IOException or UnauthorizedAccessException => (1, error.Message),
            FormatException => (2, error.Message),
            _ => (1, error.ToString()),
        };
        Console.Error.WriteLine($"feitian: {message}");
        return code;
    }
}
