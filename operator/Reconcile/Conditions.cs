using k8s.Models;

namespace FeitianK8s.Operator.Reconcile;

/// <summary>Status condition helpers; the transition time changes only when the condition's status does.</summary>
public static class Conditions
{
    public const string Ready = "Ready";
    public const string Progressing = "Progressing";
    public const string Degraded = "Degraded";
    /// <summary>On Volumes: the master volume matches the spec (or why it does not).</summary>
    public const string Synced = "Synced";
    public const string Unknown = "Unknown";

    public static void Set(IList<V1Condition> conditions, string type, bool status, string reason, string message, long? generation) =>
        Set(conditions, type, status ? "True" : "False", reason, message, generation);

    /// <summary>Sets a condition to "True", "False" or "Unknown".</summary>
    public static void Set(IList<V1Condition> conditions, string type, string value, string reason, string message, long? generation)
    {
        var existing = conditions.FirstOrDefault(c => c.Type == type);
        if (existing is null)
        {
            conditions.Add(new V1Condition
            {
                Type = type, Status = value, Reason = reason, Message = message,
                ObservedGeneration = generation, LastTransitionTime = DateTime.UtcNow,
            });
            return;
        }
        if (existing.Status != value)
        {
            existing.LastTransitionTime = DateTime.UtcNow;
        }
        existing.Status = value;
        existing.Reason = reason;
        existing.Message = message;
        existing.ObservedGeneration = generation;
    }

    public static bool IsTrue(IEnumerable<V1Condition>? conditions, string type) =>
        conditions?.Any(c => c.Type == type && c.Status == "True") == true;

    public static V1Condition? Find(IEnumerable<V1Condition>? conditions, string type) => conditions?.FirstOrDefault(c => c.Type == type);
}
