using System.Collections.Concurrent;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Kube;

/// <summary>
/// Records Kubernetes Events on an object for what users should see (kubectl describe).
/// The same reason and message on the same object is recorded at most once a minute.
/// A failure to record is logged and never fails the reconcile.
/// </summary>
public sealed class EventRecorder(IKubernetes client, string component, ILogger<EventRecorder> logger)
{
    private readonly ConcurrentDictionary<string, DateTime> _recent = new();

    public async Task RecordAsync(IKubernetesObject<V1ObjectMeta> obj, string type, string reason, string message, CancellationToken ct)
    {
        var meta = obj.Metadata;
        var key = $"{meta.NamespaceProperty}/{meta.Name}/{reason}/{message}";
        var now = DateTime.UtcNow;
        if (_recent.TryGetValue(key, out var last) && now - last < TimeSpan.FromMinutes(1))
        {
            return;
        }
        _recent[key] = now;
        var ev = new Corev1Event
        {
            Metadata = new V1ObjectMeta { GenerateName = $"{meta.Name}.", NamespaceProperty = meta.NamespaceProperty },
            InvolvedObject = new V1ObjectReference
            {
                ApiVersion = obj.ApiVersion,
                Kind = obj.Kind,
                Name = meta.Name,
                NamespaceProperty = meta.NamespaceProperty,
                Uid = meta.Uid,
                ResourceVersion = meta.ResourceVersion,
            },
            Type = type,
            Reason = reason,
            Message = message,
            Source = new V1EventSource { Component = component },
            FirstTimestamp = now,
            LastTimestamp = now,
            Count = 1,
        };
        try
        {
            await client.CoreV1.CreateNamespacedEventAsync(ev, meta.NamespaceProperty ?? "default", cancellationToken: ct);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogWarning(e, "Could not record event {Reason} on {Namespace}/{Name}", reason, meta.NamespaceProperty, meta.Name);
        }
    }
}
