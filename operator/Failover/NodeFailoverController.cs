using FeitianK8s.Operator.Kube;
using FeitianK8s.Operator.Resources;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace FeitianK8s.Operator.Failover;

public sealed class NodeFailoverOptions
{
    /// <summary>Namespace of the StorageClusters whose masters are asked; null = every namespace.</summary>
    public string? Namespace { get; init; }
    /// <summary>How often nodes and node leases are compared.</summary>
    public TimeSpan Period { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// Runs while the operator leads: every period, reads the node leases of every StorageCluster with
/// failover on (from its master's leader) and the Kubernetes nodes, plans with
/// <see cref="NodeFailoverPlanner"/>, and writes the taints (an update carrying the node's
/// resourceVersion: a concurrent change is a conflict, tried again next period).
/// </summary>
public sealed class NodeFailoverController(IKubernetes client, INodeLeaseSource leases, EventRecorder events, NodeFailoverOptions options,
    ILogger<NodeFailoverController> logger)
{
    private static readonly Counter Changes = Metrics.CreateCounter("feitian_operator_node_failover_actions_total",
        "Out-of-service taints added and removed on nodes by the node failover.", "action");

    public async Task RunAsync(CancellationToken ct)
    {
        logger.LogInformation("Node failover started: nodes whose Feitian node lease expired while Kubernetes reports them NotReady get the {Taint} taint (checked every {Period})",
            $"{NodeFailoverPlanner.OutOfServiceTaintKey}={NodeFailoverPlanner.OutOfServiceTaintValue}:{NodeFailoverPlanner.OutOfServiceTaintEffect}", options.Period);
        using var timer = new PeriodicTimer(options.Period);
        try
        {
            do
            {
                try
                {
                    await RunOnceAsync(ct);
                }
                catch (Exception) when (ct.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    logger.LogWarning(e, "Node failover pass failed ({Class}); trying again in {Period}", KubeErrors.Classify(e), options.Period);
                }
            }
            while (await timer.WaitForNextTickAsync(ct));
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>One pass: read, plan, act. Returns the actions carried out.</summary>
    public async Task<IReadOnlyList<FailoverAction>> RunOnceAsync(CancellationToken ct)
    {
        var clusters = options.Namespace is { } ns
            ? (await client.CustomObjects.ListNamespacedCustomObjectWithHttpMessagesAsync<StorageClusterList>(
                StorageCluster.Group, StorageCluster.Version, ns, StorageCluster.Plural, cancellationToken: ct)).Body
            : (await client.CustomObjects.ListClusterCustomObjectWithHttpMessagesAsync<StorageClusterList>(
                StorageCluster.Group, StorageCluster.Version, StorageCluster.Plural, cancellationToken: ct)).Body;
        var answered = new List<IEnumerable<(string, string)>>();
        foreach (var cluster in (clusters.Items ?? []).Where(c => c.Spec?.NodeFailover?.Enabled ?? true))
        {
            var list = await leases.ListAsync(cluster, ct);
            if (list is not null)
            {
                answered.Add(list.Select(l => (l.Node, l.State)));
            }
        }
        // No master answered: nothing can be judged (an expiry never comes from silence here).
        var merged = answered.Count == 0 ? null : NodeFailoverPlanner.Merge(answered);
        var nodes = (await client.CoreV1.ListNodeAsync(cancellationToken: ct)).Items ?? [];
        var actions = NodeFailoverPlanner.Plan(nodes.Select(NodeView.From), merged);
        var done = new List<FailoverAction>();
        foreach (var action in actions)
        {
            var node = nodes.First(n => n.Metadata.Name == action.Node);
            try
            {
                await ApplyAsync(node, action, ct);
                done.Add(action);
            }
            catch (Exception e) when (KubeErrors.Is(e, KubeErrorClass.Conflict) || KubeErrors.Is(e, KubeErrorClass.NotFound))
            {
                logger.LogInformation("Node {Node} changed while the failover updated it ({Class}); looking again next pass", action.Node, KubeErrors.Classify(e));
            }
        }
        return done;
    }

    private async Task ApplyAsync(V1Node node, FailoverAction action, CancellationToken ct)
    {
        node.ApiVersion ??= "v1";
        node.Kind ??= "Node";
        node.Spec ??= new V1NodeSpec();
        var taints = (node.Spec.Taints ?? []).ToList();
        var annotations = node.Metadata.Annotations ?? new Dictionary<string, string>();
        switch (action.Kind)
        {
            case FailoverActionKind.Taint:
                taints.Add(new V1Taint
                {
                    Key = NodeFailoverPlanner.OutOfServiceTaintKey,
                    Value = NodeFailoverPlanner.OutOfServiceTaintValue,
                    Effect = NodeFailoverPlanner.OutOfServiceTaintEffect,
                    TimeAdded = DateTime.UtcNow,
                });
                annotations[NodeFailoverPlanner.TaintedAnnotation] = DateTime.UtcNow.ToString("o", System.Globalization.CultureInfo.InvariantCulture);
                break;
            case FailoverActionKind.Untaint:
                taints.RemoveAll(NodeFailoverPlanner.IsOutOfServiceTaint);
                annotations.Remove(NodeFailoverPlanner.TaintedAnnotation);
                break;
            case FailoverActionKind.ForgetAnnotation:
                annotations.Remove(NodeFailoverPlanner.TaintedAnnotation);
                break;
        }
        node.Spec.Taints = taints;
        node.Metadata.Annotations = annotations;
        // Carries the resourceVersion read above: a node changed since is a 409, never overwritten.
        await client.CoreV1.ReplaceNodeAsync(node, node.Metadata.Name, cancellationToken: ct);
        Changes.WithLabels(action.Kind.ToString()).Inc();
        if (action.Kind == FailoverActionKind.ForgetAnnotation)
        {
            logger.LogInformation("Node {Node}: {Reason}", action.Node, action.Reason);
            return;
        }
        var what = action.Kind == FailoverActionKind.Taint ? "marked out of service" : "back in service";
        logger.LogWarning("Node {Node} {What}: {Reason}", action.Node, what, action.Reason);
        await events.RecordAsync(node, action.Kind == FailoverActionKind.Taint ? "Warning" : "Normal",
            action.Kind == FailoverActionKind.Taint ? "NodeOutOfService" : "NodeBackInService", $"{what}: {action.Reason}", ct);
    }
}
