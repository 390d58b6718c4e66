using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Common;

/// <summary>Logging of the driver's hosts: the caller's providers (tests) or one console line per entry; framework chatter only from warnings up.</summary>
public static class HostLogging
{
    public static void Configure(ILoggingBuilder logging, Action<ILoggingBuilder>? custom)
    {
        logging.ClearProviders();
        if (custom is not null)
        {
            custom(logging);
        }
        else
        {
            logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
        }
        logging.AddFilter("Microsoft", LogLevel.Warning).AddFilter("Grpc", LogLevel.Warning);
    }
}
