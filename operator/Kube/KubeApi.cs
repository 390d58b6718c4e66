using System.Reflection;
using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Resources;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Kube;

public enum ApplyOutcome
{
    Created,
    Updated,
    Unchanged,
}

/// <summary>The operator's typed access to the Kubernetes API (one place that knows paths and verbs).</summary>
public sealed class KubeApi(IKubernetes client, ILogger<KubeApi> logger)
{
    private static readonly MethodInfo ApplyTypedMethod = typeof(KubeApi).GetMethod(nameof(ApplyTypedAsync), BindingFlags.NonPublic | BindingFlags.Instance)!;

    public IKubernetes Client => client;

    private GenericClient For(ResourceKind kind) =>
        kind.Group.Length == 0
            ? new GenericClient(client, kind.Version, kind.Plural, false)
            : new GenericClient(client, kind.Group, kind.Version, kind.Plural, false);

    public async Task<T?> GetAsync<T>(ResourceKind kind, string? ns, string name, CancellationToken ct) where T : class, IKubernetesObject
    {
        try
        {
            using var g = For(kind);
            return kind.Namespaced ? await g.ReadNamespacedAsync<T>(ns!, name, ct) : await g.ReadAsync<T>(name, ct);
        }
        catch (Exception e) when (KubeErrors.Is(e, KubeErrorClass.NotFound))
        {
            return null;
        }
    }

    public async Task<IList<T>> ListAsync<T, TList>(ResourceKind kind, string? ns, string? labelSelector, CancellationToken ct)
        where TList : class, IKubernetesObject, IItems<T>
    {
        using var g = For(kind);
        var list = kind.Namespaced && ns is not null
            ? await g.ListNamespacedAsync<TList>(ns, labelSelector: labelSelector, cancel: ct)
            : await g.ListAsync<TList>(labelSelector: labelSelector, cancel: ct);
        return list.Items ?? [];
    }

    public async Task<T> CreateAsync<T>(ResourceKind kind, T obj, CancellationToken ct) where T : class, IKubernetesObject<V1ObjectMeta>
    {
        using var g = For(kind);
        return kind.Namespaced ? await g.CreateNamespacedAsync(obj, obj.Metadata.NamespaceProperty, ct) : await g.CreateAsync(obj, ct);
    }

    public async Task<T> ReplaceAsync<T>(ResourceKind kind, T obj, CancellationToken ct) where T : class, IKubernetesObject<V1ObjectMeta>
    {
        using var g = For(kind);
        return kind.Namespaced
            ? await g.ReplaceNamespacedAsync(obj, obj.Metadata.NamespaceProperty, obj.Metadata.Name, ct)
            : await g.ReplaceAsync(obj, obj.Metadata.Name, ct);
    }

    /// <summary>Deletes an object; true if it was there. Deleting what is missing is not an error.</summary>
    public async Task<bool> DeleteAsync(ResourceKind kind, string? ns, string name, CancellationToken ct)
    {
        try
        {
            using var g = For(kind);
            if (kind.Namespaced)
            {
                await g.DeleteNamespacedAsync<V1Status>(ns!, name, ct);
            }
            else
            {
                await g.DeleteAsync<V1Status>(name, ct);
            }
            return true;
        }
        catch (Exception e) when (KubeErrors.Is(e, KubeErrorClass.NotFound))
        {
            return false;
        }
    }

    public async Task<StorageCluster> ReplaceStatusAsync(StorageCluster cluster, CancellationToken ct)
    {
        using var response = await client.CustomObjects.ReplaceNamespacedCustomObjectStatusWithHttpMessagesAsync<StorageCluster>(
            cluster, StorageCluster.Group, StorageCluster.Version, cluster.Metadata.NamespaceProperty, StorageCluster.Plural, cluster.Metadata.Name,
            cancellationToken: ct);
        return response.Body;
    }

    public async Task<Volume> ReplaceStatusAsync(Volume volume, CancellationToken ct)
    {
        using var response = await client.CustomObjects.ReplaceNamespacedCustomObjectStatusWithHttpMessagesAsync<Volume>(
            volume, StorageCluster.Group, StorageCluster.Version, volume.Metadata.NamespaceProperty, Volume.Plural, volume.Metadata.Name,
            cancellationToken: ct);
        return response.Body;
    }

    /// <summary>
    /// Makes the object match the desired one: create if missing; replace (carrying the current
    /// resourceVersion, so a concurrent change answers 409) when the content hash differs.
    /// </summary>
    public Task<ApplyOutcome> ApplyAsync(DesiredObject desired, CancellationToken ct) =>
        (Task<ApplyOutcome>)ApplyTypedMethod.MakeGenericMethod(desired.Kind.ClrType).Invoke(this, [desired.Kind, desired.Object, ct])!;

    private async Task<ApplyOutcome> ApplyTypedAsync<T>(ResourceKind kind, T desired, CancellationToken ct) where T : class, IKubernetesObject<V1ObjectMeta>
    {
        var meta = desired.Metadata;
        var existing = await GetAsync<T>(kind, meta.NamespaceProperty, meta.Name, ct);
        if (existing is null)
        {
            await CreateAsync(kind, desired, ct);
            logger.LogInformation("Created {Kind} {Namespace}/{Name}", kind.Plural, meta.NamespaceProperty, meta.Name);
            return ApplyOutcome.Created;
        }
        if (!kind.Namespaced)
        {
            var owner = Names.Value(existing.Metadata.Labels, Names.OwnerLabel);
            var wanted = Names.Value(meta.Labels, Names.OwnerLabel);
            if (owner != wanted)
            {
                throw new ForeignObjectException($"{kind.Plural}/{meta.Name} exists and belongs to '{owner ?? "someone else"}', not '{wanted}'");
            }
        }
        if (Names.Value(existing.Metadata.Annotations, Names.SpecHashAnnotation) == Names.Value(meta.Annotations, Names.SpecHashAnnotation))
        {
            return ApplyOutcome.Unchanged;
        }
        meta.ResourceVersion = existing.Metadata.ResourceVersion;
        if (desired is V1Service svc && existing is V1Service current)
        {
            // The cluster IP is allocated by the API server and immutable.
            svc.Spec.ClusterIP = current.Spec?.ClusterIP ?? svc.Spec.ClusterIP;
            svc.Spec.ClusterIPs = current.Spec?.ClusterIPs;
        }
        await ReplaceAsync(kind, desired, ct);
        logger.LogInformation("Updated {Kind} {Namespace}/{Name}", kind.Plural, meta.NamespaceProperty, meta.Name);
        return ApplyOutcome.Updated;
    }
}

/// <summary>A cluster-scoped object with our name exists but another owner (or nobody we know) made it.</summary>
public sealed class ForeignObjectException(string message) : Exception(message);
