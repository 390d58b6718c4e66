using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using FeitianK8s.Core.Common;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Tests.Fake;

/// <summary>
/// A FAKE Kubernetes API server on 127.0.0.1 (Kestrel, port 0) for reconcile-loop tests: a
/// generic object store for any group/version/resource that keeps resourceVersions and
/// generations, answers 404, 409 (create of an existing name, update with a stale
/// resourceVersion), 410 (watch from a compacted resourceVersion), honours finalizers and
/// deletionTimestamp, garbage-collects owned objects on delete (a stand-in for the real GC), and
/// streams watch events. It runs no controllers: tests play kubelet/controller by writing status.
/// </summary>
public sealed class FakeKubeApiServer : IAsyncDisposable
{
    private readonly object _lock = new();
    private readonly Dictionary<string, SortedDictionary<string, JsonObject>> _collections = [];
    private readonly List<WatchEvent> _log = [];
    private readonly List<Watcher> _watchers = [];
    private readonly List<Fault> _faults = [];
    private readonly WebApplication _app;
    private readonly ILogger _logger;
    private long _resourceVersion = 100;
    private long _compactedBelow;

    private sealed record WatchEvent(long Rv, string Collection, string? Namespace, string Type, JsonObject Object);
    private sealed record Watcher(string Collection, string? Namespace, Channel<string> Channel);
    private sealed class Fault(string method, string pathContains, HttpStatusCode status, int count)
    {
        public string Method { get; } = method;
        public string PathContains { get; } = pathContains;
        public HttpStatusCode Status { get; } = status;
        public int Remaining { get; set; } = count;
    }

    private FakeKubeApiServer(WebApplication app, ILogger logger)
    {
        _app = app;
        _logger = logger;
    }

    public string Url { get; private set; } = "";
    public int Requests { get; private set; }
    public int FaultsServed { get; private set; }
    public int GoneServed { get; private set; }

    public static async Task<FakeKubeApiServer> StartAsync(ILoggerFactory loggerFactory)
    {
        var builder = ServerHostBuilder.CreateSlim();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var server = new FakeKubeApiServer(app, loggerFactory.CreateLogger("FakeKubeApiServer"));
        app.Run(server.HandleGuardedAsync);
        await app.StartAsync();
        server.Url = app.Urls.First();
        return server;
    }

    /// <summary>The next <paramref name="count"/> requests with this method whose path contains the text fail with the status.</summary>
    public void FailNext(string method, string pathContains, HttpStatusCode status, int count = 1)
    {
        lock (_lock)
        {
            _faults.Add(new Fault(method, pathContains, status, count));
        }
    }

    /// <summary>Forgets the event history: watches resuming from any older resourceVersion get 410 Gone, and open watches end.</summary>
    public void Compact()
    {
        lock (_lock)
        {
            _compactedBelow = _resourceVersion + 1;
            _log.Clear();
            foreach (var w in _watchers)
            {
                w.Channel.Writer.TryComplete();
            }
            _watchers.Clear();
        }
    }

    // ---------- direct access for tests (as kubectl / kubelet would) ----------

    public JsonObject? Get(string collection, string? ns, string name)
    {
        lock (_lock)
        {
            return _collections.TryGetValue(collection, out var c) && c.TryGetValue(Key(ns, name), out var o) ? (JsonObject)o.DeepClone() : null;
        }
    }

    public IReadOnlyList<JsonObject> List(string collection, string? ns = null)
    {
        lock (_lock)
        {
            return !_collections.TryGetValue(collection, out var c) ? [] :
                c.Values.Where(o => ns is null || Namespace(o) == ns).Select(o => (JsonObject)o.DeepClone()).ToList();
        }
    }

    public JsonObject Create(string collection, string? ns, JsonObject obj)
    {
        lock (_lock)
        {
            var (status, result) = CreateLocked(collection, ns, obj);
            return status == HttpStatusCode.Created ? result : throw new InvalidOperationException(result.ToJsonString());
        }
    }

    /// <summary>Changes an object in place (spec or status), as another client would; bumps the generation if the spec changed.</summary>
    public JsonObject Update(string collection, string? ns, string name, Action<JsonObject> change)
    {
        lock (_lock)
        {
            var current = _collections[collection][Key(ns, name)];
            var copy = (JsonObject)current.DeepClone();
            change(copy);
            var (status, result) = UpdateLocked(collection, ns, name, copy, statusOnly: false, allowStatus: true);
            return status == HttpStatusCode.OK ? result : throw new InvalidOperationException(result.ToJsonString());
        }
    }

    public void Delete(string collection, string? ns, string name)
    {
        lock (_lock)
        {
            DeleteLocked(collection, ns, name);
        }
    }

    // ---------- HTTP ----------

    private async Task HandleGuardedAsync(HttpContext ctx)
    {
        try
        {
            await HandleAsync(ctx);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _logger.LogError(e, "Fake API server failed on {Method} {Path}", ctx.Request.Method, ctx.Request.Path);
            if (!ctx.Response.HasStarted)
            {
                await WriteStatusAsync(ctx, HttpStatusCode.InternalServerError, "InternalError", e.Message);
            }
        }
    }

    private async Task HandleAsync(HttpContext ctx)
    {
        var path = ctx.Request.Path.Value ?? "";
        var method = ctx.Request.Method;
        Fault? fault;
        lock (_lock)
        {
            Requests++;
            fault = _faults.FirstOrDefault(f => f.Method == method && path.Contains(f.PathContains, StringComparison.Ordinal) && f.Remaining > 0);
            if (fault is not null)
            {
                fault.Remaining--;
                FaultsServed++;
            }
        }
        if (fault is not null)
        {
            _logger.LogInformation("Injected {Status} for {Method} {Path}", (int)fault.Status, method, path);
            await WriteStatusAsync(ctx, fault.Status, "InternalError", $"injected fault for {method} {path}");
            return;
        }
        if (!TryParse(path, out var collection, out var ns, out var name, out var sub))
        {
            await WriteStatusAsync(ctx, HttpStatusCode.NotFound, "NotFound", $"no such path {path}");
            return;
        }
        JsonObject? body = null;
        if (method is "POST" or "PUT")
        {
            try
            {
                body = JsonNode.Parse(await new StreamReader(ctx.Request.Body).ReadToEndAsync()) as JsonObject;
            }
            catch (JsonException)
            {
            }
            if (body is null)
            {
                await WriteStatusAsync(ctx, HttpStatusCode.BadRequest, "BadRequest", "body is not a JSON object");
                return;
            }
        }
        if (method == "GET" && name is null && ctx.Request.Query["watch"] == "true")
        {
            await WatchAsync(ctx, collection, ns);
            return;
        }
        HttpStatusCode status;
        JsonObject result;
        lock (_lock)
        {
            (status, result) = (method, name, sub) switch
            {
                ("GET", null, _) => ListLocked(collection, ns, ctx.Request.Query["labelSelector"]),
                ("GET", not null, _) => GetLocked(collection, ns, name),
                ("POST", null, _) => CreateLocked(collection, ns, body!),
                ("PUT", not null, null) => UpdateLocked(collection, ns, name, body!, statusOnly: false, allowStatus: false),
                ("PUT", not null, "status") => UpdateLocked(collection, ns, name, body!, statusOnly: true, allowStatus: true),
                ("DELETE", not null, null) => DeleteLocked(collection, ns, name),
                _ => (HttpStatusCode.MethodNotAllowed, StatusObject(HttpStatusCode.MethodNotAllowed, "MethodNotAllowed", $"{method} {path}")),
            };
        }
        ctx.Response.StatusCode = (int)status;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(result.ToJsonString());
    }

    private static bool TryParse(string path, out string collection, out string? ns, out string? name, out string? sub)
    {
        collection = "";
        ns = name = sub = null;
        var parts = path.Trim('/').Split('/');
        int i;
        string gv;
        if (parts.Length >= 2 && parts[0] == "api")
        {
            gv = parts[1];
            i = 2;
        }
        else if (parts.Length >= 3 && parts[0] == "apis")
        {
            gv = $"{parts[1]}/{parts[2]}";
            i = 3;
        }
        else
        {
            return false;
        }
        if (parts.Length > i + 2 && parts[i] == "namespaces")
        {
            ns = parts[i + 1];
            i += 2;
        }
        if (parts.Length <= i)
        {
            return false;
        }
        collection = $"{gv}/{parts[i]}";
        name = parts.Length > i + 1 ? parts[i + 1] : null;
        sub = parts.Length > i + 2 ? parts[i + 2] : null;
        return true;
    }

    private (HttpStatusCode, JsonObject) ListLocked(string collection, string? ns, string? labelSelector)
    {
        var selector = (labelSelector ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : "");
        var items = new JsonArray();
        if (_collections.TryGetValue(collection, out var c))
        {
            foreach (var o in c.Values.Where(o => (ns is null || Namespace(o) == ns) && MatchesLabels(o, selector)))
            {
                items.Add(o.DeepClone());
            }
        }
        return (HttpStatusCode.OK, new JsonObject
        {
            ["kind"] = "List",
            ["apiVersion"] = "v1",
            ["metadata"] = new JsonObject { ["resourceVersion"] = _resourceVersion.ToString() },
            ["items"] = items,
        });
    }

    private (HttpStatusCode, JsonObject) GetLocked(string collection, string? ns, string name) =>
        _collections.TryGetValue(collection, out var c) && c.TryGetValue(Key(ns, name), out var o)
            ? (HttpStatusCode.OK, (JsonObject)o.DeepClone())
            : (HttpStatusCode.NotFound, StatusObject(HttpStatusCode.NotFound, "NotFound", $"{collection} \"{name}\" not found"));

    private (HttpStatusCode, JsonObject) CreateLocked(string collection, string? ns, JsonObject body)
    {
        var obj = (JsonObject)body.DeepClone();
        var meta = obj["metadata"] as JsonObject ?? new JsonObject();
        obj["metadata"] = meta;
        if (meta["name"] is null && meta["generateName"]?.GetValue<string>() is { } prefix)
        {
            meta["name"] = prefix + Guid.NewGuid().ToString("N")[..5];
        }
        var name = meta["name"]?.GetValue<string>();
        if (string.IsNullOrEmpty(name))
        {
            return (HttpStatusCode.UnprocessableEntity, StatusObject(HttpStatusCode.UnprocessableEntity, "Invalid", "metadata.name is required"));
        }
        if (ns is not null)
        {
            meta["namespace"] = ns;
        }
        var c = Collection(collection);
        if (c.ContainsKey(Key(ns, name)))
        {
            return (HttpStatusCode.Conflict, StatusObject(HttpStatusCode.Conflict, "AlreadyExists", $"{collection} \"{name}\" already exists"));
        }
        meta["uid"] = Guid.NewGuid().ToString();
        meta["creationTimestamp"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ");
        meta["generation"] = 1L;
        meta["resourceVersion"] = (++_resourceVersion).ToString();
        c[Key(ns, name)] = obj;
        Publish(collection, ns, "ADDED", obj);
        return (HttpStatusCode.Created, (JsonObject)obj.DeepClone());
    }

    private (HttpStatusCode, JsonObject) UpdateLocked(string collection, string? ns, string name, JsonObject body, bool statusOnly, bool allowStatus)
    {
        if (!_collections.TryGetValue(collection, out var c) || !c.TryGetValue(Key(ns, name), out var current))
        {
            return (HttpStatusCode.NotFound, StatusObject(HttpStatusCode.NotFound, "NotFound", $"{collection} \"{name}\" not found"));
        }
        var sentRv = body["metadata"]?["resourceVersion"]?.GetValue<string>();
        var currentRv = current["metadata"]!["resourceVersion"]!.GetValue<string>();
        if (!string.IsNullOrEmpty(sentRv) && sentRv != currentRv)
        {
            return (HttpStatusCode.Conflict, StatusObject(HttpStatusCode.Conflict, "Conflict",
                $"Operation cannot be fulfilled on {collection} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"));
        }
        JsonObject next;
        if (statusOnly)
        {
            next = (JsonObject)current.DeepClone();
            next["status"] = body["status"]?.DeepClone();
        }
        else
        {
            next = (JsonObject)body.DeepClone();
            var meta = (JsonObject)next["metadata"]!;
            var oldMeta = (JsonObject)current["metadata"]!;
            foreach (var fixedField in new[] { "uid", "creationTimestamp", "deletionTimestamp", "namespace", "name" })
            {
                meta[fixedField] = oldMeta[fixedField]?.DeepClone();
            }
            if (!allowStatus)
            {
                next["status"] = current["status"]?.DeepClone();
            }
            meta["generation"] = long.Parse(oldMeta["generation"]!.ToJsonString()) + (SpecChanged(current, next) ? 1 : 0);
        }
        next["metadata"]!["resourceVersion"] = (++_resourceVersion).ToString();
        var deleting = next["metadata"]!["deletionTimestamp"] is not null;
        var finalizers = next["metadata"]!["finalizers"] as JsonArray;
        if (deleting && (finalizers is null || finalizers.Count == 0))
        {
            c.Remove(Key(ns, name));
            Publish(collection, ns, "DELETED", next);
            CollectGarbage(next);
            return (HttpStatusCode.OK, (JsonObject)next.DeepClone());
        }
        c[Key(ns, name)] = next;
        Publish(collection, ns, "MODIFIED", next);
        return (HttpStatusCode.OK, (JsonObject)next.DeepClone());
    }

    private (HttpStatusCode, JsonObject) DeleteLocked(string collection, string? ns, string name)
    {
        if (!_collections.TryGetValue(collection, out var c) || !c.TryGetValue(Key(ns, name), out var current))
        {
            return (HttpStatusCode.NotFound, StatusObject(HttpStatusCode.NotFound, "NotFound", $"{collection} \"{name}\" not found"));
        }
        var meta = (JsonObject)current["metadata"]!;
        if (meta["finalizers"] is JsonArray { Count: > 0 })
        {
            if (meta["deletionTimestamp"] is null)
            {
                meta["deletionTimestamp"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ");
                meta["generation"] = long.Parse(meta["generation"]!.ToJsonString()) + 1;
                meta["resourceVersion"] = (++_resourceVersion).ToString();
                Publish(collection, ns, "MODIFIED", current);
            }
            return (HttpStatusCode.OK, (JsonObject)current.DeepClone());
        }
        c.Remove(Key(ns, name));
        meta["resourceVersion"] = (++_resourceVersion).ToString();
        Publish(collection, ns, "DELETED", current);
        CollectGarbage(current);
        return (HttpStatusCode.OK, StatusObject(HttpStatusCode.OK, "Success", "deleted"));
    }

    /// <summary>Stand-in for the garbage collector: deletes objects whose owner reference names the deleted uid.</summary>
    private void CollectGarbage(JsonObject owner)
    {
        var uid = owner["metadata"]?["uid"]?.GetValue<string>();
        if (uid is null)
        {
            return;
        }
        foreach (var (collection, c) in _collections.ToList())
        {
            foreach (var o in c.Values.ToList())
            {
                if (o["metadata"]?["ownerReferences"] is JsonArray refs && refs.Any(r => r?["uid"]?.GetValue<string>() == uid))
                {
                    DeleteLocked(collection, Namespace(o), o["metadata"]!["name"]!.GetValue<string>());
                }
            }
        }
    }

    private async Task WatchAsync(HttpContext ctx, string collection, string? ns)
    {
        var rvText = ctx.Request.Query["resourceVersion"].ToString();
        var timeout = int.TryParse(ctx.Request.Query["timeoutSeconds"], out var t) ? t : 300;
        var channel = Channel.CreateUnbounded<string>();
        lock (_lock)
        {
            if (long.TryParse(rvText, out var rv) && rv > 0)
            {
                if (rv < _compactedBelow - 1)
                {
                    GoneServed++;
                    channel.Writer.TryWrite(JsonLine("ERROR", StatusObject(HttpStatusCode.Gone, "Expired", $"too old resource version: {rv} ({_compactedBelow})")));
                    channel.Writer.TryComplete();
                }
                else
                {
                    foreach (var e in _log.Where(e => e.Rv > rv && e.Collection == collection && (ns is null || e.Namespace == ns)))
                    {
                        channel.Writer.TryWrite(JsonLine(e.Type, e.Object));
                    }
                }
            }
            else if (_collections.TryGetValue(collection, out var c))
            {
                foreach (var o in c.Values.Where(o => ns is null || Namespace(o) == ns))
                {
                    channel.Writer.TryWrite(JsonLine("ADDED", o));
                }
            }
            if (!channel.Reader.Completion.IsCompleted)
            {
                _watchers.Add(new Watcher(collection, ns, channel));
            }
        }
        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.Body.FlushAsync();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        cts.CancelAfter(TimeSpan.FromSeconds(timeout));
        try
        {
            await foreach (var line in channel.Reader.ReadAllAsync(cts.Token))
            {
                await ctx.Response.WriteAsync(line, cts.Token);
                await ctx.Response.Body.FlushAsync(cts.Token);
            }
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            lock (_lock)
            {
                _watchers.RemoveAll(w => w.Channel == channel);
            }
        }
    }

    private void Publish(string collection, string? ns, string type, JsonObject obj)
    {
        var snapshot = (JsonObject)obj.DeepClone();
        var rv = long.Parse(snapshot["metadata"]!["resourceVersion"]!.GetValue<string>());
        _log.Add(new WatchEvent(rv, collection, ns, type, snapshot));
        var line = JsonLine(type, snapshot);
        foreach (var w in _watchers.Where(w => w.Collection == collection && (w.Namespace is null || w.Namespace == ns)))
        {
            w.Channel.Writer.TryWrite(line);
        }
    }

    private static string JsonLine(string type, JsonObject obj) =>
        new JsonObject { ["type"] = type, ["object"] = obj.DeepClone() }.ToJsonString() + "\n";

    private static bool SpecChanged(JsonObject before, JsonObject after)
    {
        static string Content(JsonObject o) => string.Join("|", o.Where(kv => kv.Key is not ("metadata" or "status")).OrderBy(kv => kv.Key)
            .Select(kv => $"{kv.Key}={kv.Value?.ToJsonString()}"));
        return Content(before) != Content(after);
    }

    private static bool MatchesLabels(JsonObject o, Dictionary<string, string> selector) =>
        selector.All(kv => o["metadata"]?["labels"]?[kv.Key]?.GetValue<string>() == kv.Value);

    private SortedDictionary<string, JsonObject> Collection(string name)
    {
        if (!_collections.TryGetValue(name, out var c))
        {
            _collections[name] = c = new SortedDictionary<string, JsonObject>(StringComparer.Ordinal);
        }
        return c;
    }

    private static string Key(string? ns, string name) => $"{ns}/{name}";
    private static string? Namespace(JsonObject o) => o["metadata"]?["namespace"]?.GetValue<string>();

    private static JsonObject StatusObject(HttpStatusCode code, string reason, string message) => new()
    {
        ["kind"] = "Status",
        ["apiVersion"] = "v1",
        ["metadata"] = new JsonObject(),
        ["status"] = code is HttpStatusCode.OK ? "Success" : "Failure",
        ["message"] = message,
        ["reason"] = reason,
        ["code"] = (int)code,
    };

    private static Task WriteStatusAsync(HttpContext ctx, HttpStatusCode code, string reason, string message)
    {
        ctx.Response.StatusCode = (int)code;
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(StatusObject(code, reason, message).ToJsonString(), Encoding.UTF8);
    }

    public async ValueTask DisposeAsync()
    {
        lock (_lock)
        {
            foreach (var w in _watchers)
            {
                w.Channel.Writer.TryComplete();
            }
        }
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
