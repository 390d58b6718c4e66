# Build from the repository root:  docker build -f deploy/operator.Dockerfile -t ghcr.io/feitian-k8s/operator:0.1.0 .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish operator/FeitianK8s.Operator.csproj -c Release -o /app --nologo

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
ENV DOTNET_gcServer=0 \
    DOTNET_EnableDiagnostics=0
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["dotnet", "/app/FeitianK8s.Operator.dll"]
