namespace FeitianK8s.Operator.Reconcile;

/// <summary>
/// The named outcome of one reconcile (instead of a bare "requeue" boolean): the reason is what
/// the log line and the metrics say; a delay asks for another pass even without a watch event.
/// </summary>
public sealed record ReconcileResult(string Reason, TimeSpan? RequeueAfter)
{
    public static ReconcileResult Done(string reason) => new(reason, null);
    public static ReconcileResult Requeue(string reason, TimeSpan after) => new(reason, after);

    public static readonly ReconcileResult NotFound = Done("NotFound");
    public static readonly ReconcileResult FinalizerAdded = Requeue("FinalizerAdded", TimeSpan.Zero);
    public static readonly ReconcileResult Deleted = Done("Deleted");
    public static readonly ReconcileResult InvalidSpec = Done("InvalidSpec");
    public static readonly ReconcileResult Ready = Done("Ready");
    public static ReconcileResult DeletionBlocked(TimeSpan after) => Requeue("DeletionBlockedByVolumes", after);
    public static ReconcileResult WaitingForPods(TimeSpan after) => Requeue("WaitingForPods", after);
    public static ReconcileResult RollingUpgrade(TimeSpan after) => Requeue("RollingUpgrade", after);
}
