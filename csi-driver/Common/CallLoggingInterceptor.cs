using System.Diagnostics;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Common;

/// <summary>
/// Logs every CSI call with its request (secrets and mount flags replaced by
/// "***") and its outcome.
/// </summary>
public sealed class CallLoggingInterceptor(ILogger<CallLoggingInterceptor> logger) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        var shown = request is IMessage message ? RequestRedactor.Redact(message) : "";
        logger.LogInformation("CSI {Method} {Request}", context.Method, shown);
        try
        {
            var response = await continuation(request, context);
            logger.LogInformation("CSI {Method} ok in {Ms} ms", context.Method, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            return response;
        }
        catch (RpcException e)
        {
            logger.LogWarning("CSI {Method} failed: {Code} {Detail}", context.Method, e.StatusCode, e.Status.Detail);
            throw;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogError(e, "CSI {Method} failed unexpectedly", context.Method);
            throw CsiErrors.Internal($"{context.Method}: {e.GetType().Name}: {e.Message}");
        }
    }
}

/// <summary>Renders a request as JSON without secret-bearing fields.</summary>
public static class RequestRedactor
{
    private static readonly HashSet<string> SecretFields = new(StringComparer.Ordinal) { "secrets", "mount_flags" };

    public static string Redact(IMessage message)
    {
        var copy = message.Descriptor.Parser.ParseFrom(message.ToByteString());
        Scrub(copy);
        return JsonFormatter.Default.Format(copy);
    }

    private static void Scrub(IMessage message)
    {
        foreach (var field in message.Descriptor.Fields.InFieldNumberOrder())
        {
            var value = field.Accessor.GetValue(message);
            if (SecretFields.Contains(field.Name))
            {
                if (field.IsMap && value is System.Collections.IDictionary map && map.Count > 0)
                {
                    var keys = map.Keys.Cast<object>().ToList();
                    foreach (var key in keys)
                    {
                        map[key] = "***";
                    }
                }
                else if (field.IsRepeated && value is System.Collections.IList list && list.Count > 0)
                {
                    list.Clear();
                    list.Add("***");
                }
                else if (field.FieldType == FieldType.String && value is string { Length: > 0 })
                {
                    field.Accessor.SetValue(message, "***");
                }
                continue;
            }
            if (field.FieldType != FieldType.Message || field.IsMap)
            {
                continue;
            }
            if (field.IsRepeated && value is System.Collections.IEnumerable items)
            {
                foreach (var item in items.OfType<IMessage>())
                {
                    Scrub(item);
                }
            }
            else if (value is IMessage child)
            {
                Scrub(child);
            }
        }
    }
}
